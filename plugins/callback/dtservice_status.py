"""Callback plugin: write each run's results back to the dtServices and hand them to the daemon."""

from __future__ import annotations

DOCUMENTATION = r"""
name: dtservice_status
type: aggregate
short_description: Write run results back to dtServices; report them to the reconciler daemon
description:
  - When a dtservice_* task fails, the dtServices its result reports as C(Failed) get that
    status and a Warning Event with their own message (re-read first; the module has
    usually written it already). No other object is ever written, so one tenant's failure
    stays on that tenant's dtService.
  - A node the result names in C(node_errors) (or, for a module that crashed without a
    result, every node of the call) is reported failed to the daemon, which retries it
    with backoff.
  - Results are kept per federation node (the nodes a module call worked on), not per
    inventory host, since one call serves many nodes.
  - At the end of the run, when C(DTSERVICE_RESULTS_FILE) is set (the reconciler daemon sets
    it per run), writes a JSON summary there, per node whether it failed, what changed and
    each dtService's status (and those whose key pair was replaced), so the daemon can requeue
    what is not Connected with backoff and count the rotations, and each interface's per-peer
    figures (latest handshake, bytes in and out) as the pass's probe read them, which the
    daemon's /metrics shows, and C(recheck_in), the seconds until a hub's failover is due, so
    it runs the network then.
  - Never writes a module's arguments or any private key anywhere.
requirements:
  - urllib3 and PyYAML (the API client of module_utils/kube/client.py)
options: {}
"""

import json
import os
from pathlib import Path

from ansible.plugins.callback import CallbackBase
from ansible_collections.sightline.dtservice.plugins.plugin_utils.inprocess import MODULES, preload_core

# Loaded here, in the main process, the core is already in every worker Ansible forks for
# a task, so the in-process action plugins start without importing it again.
preload_core()
from ansible_collections.sightline.dtservice.plugins.module_utils import contract  # noqa: E402
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Status  # noqa: E402
from ansible_collections.sightline.dtservice.plugins.module_utils.control.status import write_status  # noqa: E402
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster  # noqa: E402


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "dtservice_status"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[str, dict] = {}

    def _node(self, host: str) -> dict:
        return self.nodes.setdefault(host, {"failed": False, "changed": False, "services": {}, "errors": [],
                                            "tunnels": {}, "rotated": []})

    @staticmethod
    def _ours(result) -> bool:
        return result._task.action.rsplit(".", 1)[-1] in MODULES

    def _record(self, result) -> None:
        """Our modules return, per node name, the outcome of each dtService (the agent's last)."""
        for key in ("services", "interfaces"):
            for node_name, outcomes in (result._result.get(key) or {}).items():
                node = self._node(node_name)
                for outcome in outcomes:
                    node["services"][outcome["name"]] = outcome["status"]
                    if "tunnels" in outcome:
                        node["tunnels"][outcome["name"]] = outcome["tunnels"]
                    if outcome.get("recheck_in") is not None:
                        node["recheck_in"] = min(node.get("recheck_in", outcome["recheck_in"]), outcome["recheck_in"])
                    if outcome.get("key_rotated") and outcome["name"] not in node["rotated"]:
                        node["rotated"].append(outcome["name"])

    def v2_runner_on_ok(self, result) -> None:
        if not self._ours(result):
            return
        self._record(result)
        if result._result.get("changed"):
            for node_args in self._nodes_of(result):
                self._node(node_args["name"])["changed"] = True

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        if not self._ours(result) or ignore_errors:
            return
        self._record(result)
        message = str(result._result.get("msg") or result._result.get("exception", "")).strip().splitlines()
        reason = f"{result._task.get_name()}: {message[-1] if message else 'failed'}"
        failed = self._failed_services(result)
        node_errors = result._result.get("node_errors") or {}
        for node_args in self._nodes_of(result):
            name = node_args["name"]
            # A result that names what failed is believed; one that does not (a crash) fails
            # every node of the call, for the daemon to retry, but writes onto no object.
            if failed or node_errors:
                if name not in failed and name not in node_errors:
                    continue
            node = self._node(name)
            node["failed"] = True
            node["errors"].append(f"{result._task.get_name()}: {node_errors[name]}" if name in node_errors else reason)
            if failed.get(name):
                self._mark_failed(node_args, failed[name])

    @staticmethod
    def _nodes_of(result) -> list[dict]:
        invoked = (result._result.get("invocation") or {}).get("module_args") or result._task.args
        nodes = invoked.get("nodes")
        return nodes if isinstance(nodes, list) else []

    @staticmethod
    def _failed_services(result) -> dict[str, dict[str, str]]:
        """Node -> dtService -> message, for the outcomes the failed task reports as Failed."""
        failed: dict[str, dict[str, str]] = {}
        for key in ("services", "interfaces"):
            for node_name, outcomes in (result._result.get(key) or {}).items():
                for outcome in outcomes:
                    if outcome.get("status") == Status.FAILED:
                        failed.setdefault(node_name, {})[outcome["name"]] = outcome.get("message") or "failed"
        return failed

    def _mark_failed(self, node_args: dict, services: dict[str, str]) -> None:
        """Failed (and an Event) on the dtServices the run reports failed, where the run could
        not write it itself; never on any other object."""
        try:
            node = contract.NodeRef.from_params(node_args)
            cluster = Cluster()
            for name, message in services.items():
                service = cluster.get_service(node, name)  # re-read: the run may have written it
                if service is None or service["metadata"].get("deletionTimestamp"):
                    continue
                write_status(cluster=cluster, node=node, service=service, status=Status.FAILED,
                             message=message[:1000])
        except Exception as error:  # the API server may be what failed; the daemon retries
            self._display.warning(f"dtservice_status: could not record the failure: {error}")

    def v2_runner_on_unreachable(self, result) -> None:
        node = self._node(result._host.get_name())
        node["failed"] = True
        node["errors"].append("unreachable")

    def v2_playbook_on_stats(self, stats) -> None:
        target = os.environ.get("DTSERVICE_RESULTS_FILE")
        if not target:
            return
        for host in stats.processed:
            if stats.summarize(host)["unreachable"]:
                self._node(host)["failed"] = True
        Path(target).write_text(json.dumps(self.nodes, indent=2, sort_keys=True))
