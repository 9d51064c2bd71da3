import subprocess
import sys

from typer.testing import CliRunner

from dcrt.cli import app


def test_help_lists_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "info" in result.output


def test_info_reports_backends_plainly():
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    for name in ("torch (cpu)", "onnxruntime (cpu)", "tensorrt", "versions:", "torch"):
        assert name in result.output
    import torch

    if not torch.cuda.is_available():
        assert "no GPU" in result.output


def test_console_script_errors_are_one_line():
    # A DcrtError raised inside a command becomes one line on stderr and its exit code, no traceback.
    code = (
        "import sys; from dcrt import cli; from dcrt.errors import UsageError\n"
        "@cli.app.command()\n"
        "def boom():\n    raise UsageError('bad input: x')\n"
        "sys.argv = ['dcrt', 'boom']; cli.main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "dcrt: error: bad input: x"
