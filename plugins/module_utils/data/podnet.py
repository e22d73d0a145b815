"""Which network namespace on this machine is a pod's: asked of the container runtime.

Owns finding a running pod's network namespace from the pod's UID, which the API server
sets and no tenant can write, and proving the find before the root agent touches it: the
pod's IP from the API must be an address of that namespace. Two ways, tried in the order the
node's ``pod_lookup`` names:

- ``cri``: ``crictl`` lists the runtime's ready sandboxes (label ``io.kubernetes.pod.uid``)
  and reads each one's network namespace path from its runtime spec; works with containerd
  and CRI-O alike, through the node's ``runtime_endpoint``;
- ``cgroup``: a process whose cgroup path names the pod (``pod<UID>`` with the cgroupfs
  driver, ``pod<UID with _>.slice`` with systemd's) lives in the pod's namespace:
  ``/proc/<pid>/ns/net``; needs no runtime socket, only this machine's /proc.

A machine's passes remember the namespace the runtime named for each pod (``NamespaceMemory``,
root's files under /run): a later pass uses it without asking the runtime again while it is
the same namespace (its device and inode) and holds the pod's IP, so a converged pass runs no
``crictl``. Only a pinned namespace is remembered, never a process's ``/proc/PID/ns/net``
(PIDs are reused).

Nothing here reads an annotation, a label or a dtService's spec. A pod on the host's network
is refused: its namespace is the machine's own. This module runs ``crictl``, reads /proc and
asks the kernel for a namespace's addresses (``netns.snapshot``); what their output means is
``rules.runtime``'s.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.data.memory import (
    WRITING_PREFIX,
    read_memory,
    write_memory,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.data.netns import (
    Snapshot,
    WireGuardError,
    namespace_identity,
    snapshot,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.side_by_side import side_by_side
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.runtime import (
    cgroup_pod_uid,
    cri_network_paths,
    cri_sandboxes,
    local_addresses,
    pod_ips,
)

_TIMEOUT = 30
# Runtimes listed at once by a pass (one per machine whose nodes it serves).
PARALLEL_LISTINGS = 4
# The machine's passes' memory of pods' namespaces: root's, on tmpfs, like the namespaces.
MEMORY_DIR = "/run/dtservice/pod-namespaces"


class PodLookupError(RuntimeError):
    """The pod's namespace could not be found or proven; ``refused`` when what was found is
    not that pod's (or the pod must never get an interface), not merely missing yet."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


# ------------------------------------------------------------------ the machine's memory


@dataclass
class NamespaceMemory:
    """Pod UID -> the network namespace the runtime named for it, as earlier passes on this
    machine proved it: its path and its identity (device and inode of the namespace), which a
    new namespace at that path would not have. A lookup that recalls one still proves it by
    the pod's IP, as it proves what the runtime names. One file per runtime endpoint in
    ``folder``: the passes of a machine's several runtimes do not write over each other."""

    folder: str = MEMORY_DIR
    _known: dict[str, dict[str, list]] = field(default_factory=dict)  # endpoint -> uid -> entry
    _learned: dict[str, dict[str, list]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def recall(self, endpoint: str, uid: str) -> str | None:
        """The remembered namespace of the pod, if the same namespace is still at its path."""
        entry = self._entries(endpoint).get(uid)
        return entry[0] if entry is not None and _still_there(entry) else None

    def holds(self, endpoint: str) -> bool:
        """True when earlier passes left namespaces of this runtime to recall."""
        return bool(self._entries(endpoint))

    def learn(self, endpoint: str, uid: str, path: str) -> None:
        """Remember a namespace the runtime named and the pod's IP proved (kept by ``keep``)."""
        identity = None if path.startswith("/proc/") else namespace_identity(path)
        if identity is not None:
            with self._lock:
                self._learned.setdefault(endpoint, {})[uid] = [path, *identity]

    def take_learned(self) -> dict[str, dict[str, list]]:
        """What this call learned and did not keep yet, handed over (a second process's, which
        its parent ``absorb``s): endpoint -> uid -> entry."""
        with self._lock:
            learned, self._learned = self._learned, {}
        return learned

    def absorb(self, learned: dict[str, dict[str, list]]) -> None:
        """What another process of this call learned (``take_learned``), kept with this one's."""
        with self._lock:
            for endpoint, entries in learned.items():
                self._learned.setdefault(endpoint, {}).update(entries)

    def keep(self) -> None:
        """Write what this call learned, with what the files held of namespaces still there."""
        learned = self.take_learned()
        for endpoint, entries in learned.items():
            kept = {**self._read(endpoint), **entries}
            kept = {uid: entry for uid, entry in kept.items() if _still_there(entry)}
            with self._lock:
                self._known[endpoint] = kept
            try:
                self._write(endpoint, kept)
            except OSError:
                pass  # a memory not written costs the next pass a listing of the runtime, no more
        if learned:
            self._sweep(keep=set(learned))

    def _sweep(self, *, keep: set[str]) -> None:
        """Remove the files of runtimes (other than ``keep``) none of whose namespaces is left:
        a runtime gone from the machine leaves nothing behind."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        for name in names:
            if name.startswith(WRITING_PREFIX):
                continue  # another pass's file being written
            path = os.path.join(self.folder, name)
            try:
                held = read_memory(path)
                if not held or held.get("endpoint") in keep or any(map(_still_there, held.get("pods", {}).values())):
                    continue
                os.unlink(path)
            except (OSError, AttributeError, TypeError, IndexError):
                continue  # not one of ours, or being replaced: left as it is

    def _entries(self, endpoint: str) -> dict[str, list]:
        with self._lock:
            if endpoint not in self._known:
                self._known[endpoint] = self._read(endpoint)
            return self._known[endpoint]

    def _path(self, endpoint: str) -> str:
        return os.path.join(self.folder, hashlib.sha256(endpoint.encode()).hexdigest()[:32] + ".json")

    def _write(self, endpoint: str, kept: dict[str, list]) -> None:
        write_memory(self._path(endpoint), {"endpoint": endpoint, "pods": kept})

    def _read(self, endpoint: str) -> dict[str, list]:
        # Unreadable, or another endpoint's (a hash collision): the runtime is asked.
        kept = read_memory(self._path(endpoint))
        pods = kept.get("pods") if kept.get("endpoint") == endpoint else None
        return pods if isinstance(pods, dict) else {}


def _still_there(entry: list) -> bool:
    """True when the namespace a memory entry ([path, device, inode]) names is at its path."""
    return namespace_identity(entry[0]) == tuple(entry[1:])


# ------------------------------------------------------------------ the machine's view


@dataclass
class RuntimeView:
    """One module call's view of a machine's pods through one runtime endpoint: the runtime
    is listed once (again only when a pod is not found or its namespace fails the proof), and
    a pod's namespace, once proven, is not looked up again within the call."""

    runtime_endpoint: str = contract.DEFAULT_RUNTIME_ENDPOINT
    methods: tuple[str, ...] = contract.POD_LOOKUP_METHODS
    crictl: str = contract.DEFAULT_CRICTL
    _cri: dict[str, list[str]] | None = None
    _cri_paths: dict[str, str] = field(default_factory=dict)
    _cgroup: dict[str, int] | None = None
    memory: NamespaceMemory | None = None
    _proven: dict[tuple, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def network_namespace(self, pod: Mapping[str, Any], *, read: Callable[[str], Snapshot] = snapshot) -> str:
        """The proven network namespace path of a running pod, by its UID. ``read``: how a
        namespace is read for the proof (a caller that reads the pod anyway shares that)."""
        if (pod.get("spec") or {}).get("hostNetwork"):
            raise PodLookupError("the pod uses the host's network: an interface there would be the "
                                 "machine's, not the pod's", refused=True)
        uid = pod["metadata"]["uid"]
        wanted = pod_ips(pod)
        if not wanted:
            raise PodLookupError("the pod has no IP yet")
        proven = (uid, frozenset(wanted))
        if proven in self._proven:
            return self._proven[proven]
        remembered = self.memory.recall(self.runtime_endpoint, uid) \
            if self.memory is not None and "cri" in self.methods else None
        if remembered is not None and namespace_addresses(remembered, read=read) & wanted:
            self._proven[proven] = remembered
            return remembered
        problems = []
        for method in self.methods:
            for fresh in (False, True):
                try:
                    path = self._find(method, uid, fresh=fresh)
                except PodLookupError as problem:
                    problems.append(f"{method}: {problem}")
                    break
                if path is None:
                    if fresh:
                        problems.append(f"{method}: no sandbox of pod UID {uid}")
                    continue
                have = namespace_addresses(path, read=read)
                if have & wanted:
                    self._proven[proven] = path
                    if method == "cri" and self.memory is not None:
                        self.memory.learn(self.runtime_endpoint, uid, path)
                    return path
                if fresh:
                    raise PodLookupError(f"{method} named {path} for pod UID {uid}, but that namespace does not "
                                         f"hold the pod's IP {', '.join(sorted(wanted))}: not touched", refused=True)
        raise PodLookupError("; ".join(problems) or "no lookup method configured")

    def list_ahead(self) -> None:
        """The first lookup method's listing made now (a pass does it while it reconciles,
        which waits on API servers), so the interfaces' first pod lookup finds it made;
        not when earlier passes left this runtime's namespaces in memory, which the lookups
        recall (one of a pod new since then lists the runtime then). A failure is left for
        that lookup to meet and report."""
        if self.methods[0] == "cri" and self.memory is not None and self.memory.holds(self.runtime_endpoint):
            return
        try:
            self._find(self.methods[0], "", fresh=False)
        except Exception:  # noqa: BLE001, S110 - see the docstring
            pass

    def _find(self, method: str, uid: str, *, fresh: bool) -> str | None:
        with self._lock:
            if method == "cri":
                if fresh or self._cri is None:
                    # Every ready sandbox is inspected in the listing's breath: a pass over
                    # many pods costs two crictl runs, not one per pod.
                    self._cri = self._list_cri()
                    ready = sorted(s for ids in self._cri.values() for s in ids)
                    self._cri_paths = cri_network_paths(self._crictl("inspectp", "-o", "json", *ready)) \
                        if ready else {}
                sandboxes = self._cri.get(uid) or []
                paths = [self._cri_paths[s] for s in sandboxes if s in self._cri_paths]
                return paths[0] if len(paths) == 1 else None
            if method == "cgroup":
                if fresh or self._cgroup is None:
                    self._cgroup = scan_cgroups()
                pid = self._cgroup.get(uid)
                return f"/proc/{pid}/ns/net" if pid else None
            known = ", ".join(contract.POD_LOOKUP_METHODS)
            raise PodLookupError(f"unknown pod lookup method {method!r} (known: {known})")

    def _list_cri(self) -> dict[str, list[str]]:
        return cri_sandboxes(self._crictl("pods", "--state", "ready", "-o", "json"))

    def _crictl(self, *args: str) -> str:
        argv = [self.crictl, "--runtime-endpoint", self.runtime_endpoint, "--timeout", "10s", *args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, check=False,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PodLookupError(f"{self.crictl} could not be run: {error}") from None
        if proc.returncode != 0:
            raise PodLookupError(f"{self.crictl} at {self.runtime_endpoint} failed: {proc.stderr.strip()[:300]}")
        return proc.stdout


def scan_cgroups(proc: str = "/proc") -> dict[str, int]:
    """Pod UID -> the lowest pid whose cgroup names that pod (its sandbox's, usually)."""
    found: dict[str, int] = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/cgroup", encoding="utf-8", errors="replace") as handle:
                uid = cgroup_pod_uid(handle.read())
        except OSError:
            continue
        if uid and (uid not in found or int(entry) < found[uid]):
            found[uid] = int(entry)
    return found


def namespace_addresses(path: str, *, read: Callable[[str], Snapshot] = snapshot) -> set[str]:
    """The addresses inside a network namespace (empty if it cannot be entered)."""
    try:
        return local_addresses(read(path).links)
    except WireGuardError:
        return set()


@dataclass
class RuntimeViews:
    """The views of one module call, one per (endpoint, methods): nodes sharing a machine
    share its listing, and with ``memory`` what earlier passes of the machine proved."""

    memory: NamespaceMemory | None = None
    _views: dict[tuple, RuntimeView] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def list_ahead(self, nodes: Iterable[contract.NodeRef]) -> None:
        """``RuntimeView.list_ahead`` for the views of the machines of ``nodes``, side by
        side: a pass over three machines' runtimes waits for the slowest listing, not for the
        three one after another."""
        views = {id(view): view for view in (self.view(runtime_endpoint=node.runtime_endpoint,
                                                       methods=node.pod_lookup, crictl=node.crictl) for node in nodes)}
        side_by_side(list(views.values()), lambda view: view.list_ahead(), at_most=PARALLEL_LISTINGS)

    def view(self, *, runtime_endpoint: str, methods: Iterable[str],
             crictl: str = contract.DEFAULT_CRICTL) -> RuntimeView:
        key = (runtime_endpoint, tuple(methods), crictl)
        with self._lock:
            if key not in self._views:
                self._views[key] = RuntimeView(runtime_endpoint=runtime_endpoint, methods=key[1], crictl=crictl,
                                               memory=self.memory)
            return self._views[key]

    def take_learned(self) -> dict[str, dict[str, list]]:
        """``NamespaceMemory.take_learned`` of the memory, if any."""
        return {} if self.memory is None else self.memory.take_learned()

    def absorb(self, learned: dict[str, dict[str, list]]) -> None:
        if self.memory is not None:
            self.memory.absorb(learned)

    def keep(self) -> None:
        """The namespaces proven in this call, remembered for the machine's next passes."""
        if self.memory is not None:
            self.memory.keep()
