import os
import stat

import pytest

from dcrt.atomic import atomic_dir, atomic_file


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_file_replaces_target_only_on_success(tmp_path, umask_022):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
    with atomic_file(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and _mode(target) == 0o644


def test_atomic_dir_replaces_whole_directory_only_on_success(tmp_path, umask_022):
    target = tmp_path / "export"
    target.mkdir()
    (target / "stale.onnx").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as staging:
        (staging / "unet.onnx").write_text("half")
        raise RuntimeError
    assert os.listdir(target) == ["stale.onnx"] and os.listdir(tmp_path) == ["export"]
    with atomic_dir(target) as staging:
        private = staging / "sub" / "weights.safetensors"
        private.parent.mkdir()
        private.write_text("w")
        os.chmod(private, 0o600)  # how safetensors and mkstemp create files
    assert sorted(os.listdir(target)) == ["sub"]
    assert _mode(target) == 0o755 and _mode(target / "sub") == 0o755
    assert _mode(target / "sub" / "weights.safetensors") == 0o644
