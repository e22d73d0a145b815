"""The reconciler's process control: what counts as running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CTL = Path(__file__).resolve().parents[2] / "roles" / "dtservice_daemon" / "files" / "dtservice-reconcilerctl"
DAEMON = "ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler"


def status(directory: Path) -> str:
    return subprocess.run([str(CTL), str(directory), sys.executable, "status"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_killed_daemon_nobody_reaped_is_not_running(tmp_path):
    # This test is the parent and does not reap: after SIGKILL the child is a zombie, which
    # still answers `kill -0`; start must then start a new daemon, not trust the old pid.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", DAEMON, "--settings",
                              str(tmp_path / "settings.json")])
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


def test_another_directorys_daemon_is_not_this_ones(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", DAEMON, "--settings",
                              "/elsewhere/settings.json"])
    try:
        (tmp_path / "reconciler.pid").write_text(str(child.pid))
        assert status(tmp_path) == "stopped"
    finally:
        child.kill()
        child.wait()


def test_start_runs_the_daemon_from_the_collection_and_stop_ends_it(tmp_path):
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "settings.json").write_text(json.dumps({"nodes": [], "project_dir": str(root), "inventory": [],
                                                        "work_dir": str(tmp_path)}))
    # As the role writes it: the PYTHONPATH that finds the collection.
    (tmp_path / "reconciler.env").write_text(f"PYTHONPATH={root / '.collections'}\n")

    def ctl(action: str) -> str:
        return subprocess.run([str(CTL), str(tmp_path), sys.executable, action], capture_output=True, text=True,
                              check=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}).stdout.strip()

    try:
        assert ctl("start") == "changed"
        assert ctl("status") == "running"
        assert ctl("start") == ""
        pid = int((tmp_path / "reconciler.pid").read_text())
    finally:
        stopped = ctl("stop")
    assert stopped == "changed"
    assert ctl("status") == "stopped"
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
    logged = [json.loads(line) for line in (tmp_path / "reconciler.log").read_text().splitlines()]
    assert [entry["msg"] for entry in logged] == ["started", "stopping", "stopped"]
