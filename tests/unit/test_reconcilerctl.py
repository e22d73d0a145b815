"""The reconciler's process control: what counts as running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CTL = Path(__file__).resolve().parents[2] / "roles" / "dtservice_daemon" / "files" / "dtservice-reconcilerctl"


def status(directory: Path) -> str:
    return subprocess.run([str(CTL), str(directory), sys.executable, "status"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_killed_daemon_nobody_reaped_is_not_running(tmp_path):
    # This test is the parent and does not reap: after SIGKILL the child is a zombie, which
    # still answers `kill -0`; start must then start a new daemon, not trust the old pid.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "dtservice_reconciler.py"])
    try:
        (tmp_path / "reconciler.pid").write_text(str(child.pid))
        assert status(tmp_path) == "running"
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert status(tmp_path) == "stopped"
    finally:
        child.kill()
        child.wait()


def test_a_reused_pid_of_another_program_is_not_running(tmp_path):
    (tmp_path / "reconciler.pid").write_text(str(os.getpid()))
    assert status(tmp_path) == "stopped"
    (tmp_path / "reconciler.pid").unlink()
    assert status(tmp_path) == "stopped"
