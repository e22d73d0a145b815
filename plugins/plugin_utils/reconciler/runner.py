"""One reconcile run: ``playbooks/reconcile.yml`` through ansible-runner, limited to a run's nodes.

Owns how the daemon starts a run and reads what it did: the run's private directory (one per
node, which is never in two runs at once), the environment (the project's ``ansible.cfg``,
whose ``callbacks_enabled`` names the ``dtservice_status`` callback by its collection name, so
ansible-runner's own ``ANSIBLE_CALLBACK_PLUGINS`` does not hide it), the time limit (a run
over it is killed and counts as failed), and the callback's results file, per node whether
it failed and each dtService's status.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import RETRY
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import WRITES_FILE
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.schedule import Outcome, Run, Write
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.settings import Settings


@dataclass(frozen=True)
class RunResult:
    """What one run did: ``summary`` is the callback's, per node ``failed``, ``changed``,
    ``services`` (name -> status), ``errors`` and ``recheck_in`` (when a failover is due);
    ``written``, the object versions its writes made (their watch events are its echoes)."""

    ok: bool
    seconds: float
    timed_out: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    written: frozenset[Write] = frozenset()

    def outcomes(self, run: Run) -> dict[str, Outcome]:
        """Per node of the run: failed when the run failed or the callback says so; not done
        for its dtServices whose status another run may still change (``contract.RETRY``)."""
        outcomes = {}
        for name in run.members:
            node = self.summary.get(name) or {}
            not_done = tuple(sorted(s for s, status in (node.get("services") or {}).items() if status in RETRY))
            outcomes[name] = Outcome(failed=not self.ok or bool(node.get("failed")), not_done=not_done,
                                     recheck_in=node.get("recheck_in"))
        return outcomes


def run_reconcile(*, settings: Settings, run: Run, run_id: str) -> RunResult:
    """Run ``playbooks/reconcile.yml`` with ``--limit`` the run's nodes; returns when it ended
    or was stopped at ``settings.run_timeout``."""
    work = settings.work_dir / "runs" / run.node
    work.mkdir(parents=True, exist_ok=True)
    results = work / "results.json"
    results.unlink(missing_ok=True)
    writes = work / "writes.jsonl"
    writes.unlink(missing_ok=True)
    started = time.monotonic()
    import ansible_runner  # the daemon's library, not one Ansible loads with the plugins

    runner = ansible_runner.run(
        private_data_dir=str(work), project_dir=str(settings.project_dir), playbook=str(settings.playbook),
        inventory=list(settings.inventory), limit=",".join(run.members), quiet=True, ident=run_id,
        rotate_artifacts=2, timeout=math.ceil(settings.run_timeout),
        extravars={"dtservice_pass_key_max_age_seconds": settings.key_max_age},
        envvars={"ANSIBLE_CONFIG": str(settings.project_dir / "ansible.cfg"), "DTSERVICE_RESULTS_FILE": str(results),
                 WRITES_FILE: str(writes), RUN_MARK: run_id, **settings.env},
    )
    seconds = time.monotonic() - started
    timed_out = runner.status == "timeout"
    if timed_out:
        kill_run(run_id)
    summary = json.loads(results.read_text()) if results.exists() and not timed_out else {}
    return RunResult(ok=runner.rc == 0 and not timed_out, seconds=seconds, timed_out=timed_out, summary=summary,
                     written=read_writes(writes))


def read_writes(path: Path) -> frozenset[Write]:
    """The versions the run's processes recorded (``kube.client.WRITES_FILE``); a line cut
    short by a killed process is skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return frozenset()
    written = set()
    for line in lines:
        try:
            uid, version = json.loads(line)
        except ValueError:
            continue
        written.add(Write(uid=str(uid), version=str(version)))
    return frozenset(written)


# Every process of a run inherits contract.RUN_MARK, which is how a run over its time limit is
# found whole: ansible-runner kills ansible-playbook's process group, but Ansible's workers,
# where the in-process dtservice_* modules work, each run in a session of their own.
RUN_MARK = contract.RUN_MARK


def kill_run(run_id: str) -> None:
    """SIGKILL every process of the run ``run_id`` (its run then ends, failed)."""
    mark = f"{RUN_MARK}={run_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
