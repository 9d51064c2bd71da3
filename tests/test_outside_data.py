"""The suite needs only what the repository holds or builds: data kept outside it skips, saying why."""

import os
import shutil
import subprocess
import sys

from conftest import REPO


def test_a_clone_with_nothing_beside_it_skips_what_needs_outside_data(tmp_path):
    clone = tmp_path / "alone" / "dcrt"  # no `shared/` beside it, nor beside its parent
    shutil.copytree(REPO / "tests", clone / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", clone)
    env = {k: v for k, v in os.environ.items() if k != "DCRT_SHARED_DIR"} | {"PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests/families/dynamicrafter/test_checkpoint.py",
            "-k",
            "released_checkpoint",
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 skipped" in proc.stdout and "set DCRT_SHARED_DIR" in proc.stdout
