"""scripts/setup_env.sh on a disk too full for torch: a clear message before pip starts."""
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_setup_refuses_a_disk_without_room_for_torch_before_pip_starts(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup_env.sh", tmp_path / "scripts")
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    # no disk has a million GB free: the check must refuse, whatever this machine has
    env = {**os.environ, "SASSL_SETUP_NEED_GB": "1000000"}
    done = subprocess.run(["bash", "scripts/setup_env.sh"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "GB free on" in done.stderr and "needs about 1000000 GB" in done.stderr
    assert "installing sassl" not in done.stdout, "pip was started"
    assert not (tmp_path / ".venv" / ".sassl-installed").exists()
