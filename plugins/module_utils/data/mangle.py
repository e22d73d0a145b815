"""A pod's mangle table as ``iptables -S`` prints it, read by a process only after it changed.

Owns reading the table (``mangle_rules``: ``iptables -S`` run in the namespace) and the
machine's memory of the last reading (``TableMemory``, a root's file under /run): with each
table, the generation the kernel counted for the namespace's nftables rules when it was
read (``netns.rules_generation``) and the namespace's identity. A later pass that finds the
same namespace at the same generation uses the remembered table without a process: the
kernel changes the generation with every change to the namespace's rules, so a converged
pass runs no ``iptables``. Remembered only with the nf_tables variant of ``iptables`` (the
legacy one's tables are not counted), and only a reading the generation did not move
under. A reading made just before a change (``ensure_interface``'s) never comes from here.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from dataclasses import dataclass, field

from ansible_collections.sightline.dtservice.plugins.module_utils.data.memory import read_memory, write_memory
from ansible_collections.sightline.dtservice.plugins.module_utils.data.netns import (
    namespace_identity,
    namespace_path,
    rules_generation,
    run,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import probe

__all__ = ["MEMORY_FILE", "TableMemory", "mangle_rules"]

MEMORY_FILE = "/run/dtservice/mangle-tables.json"


def mangle_rules(pod_netns: str) -> str:
    """The pod's mangle table as ``iptables -S`` prints it ("" when it cannot be read)."""
    rules = run([*probe.IPTABLES, "-S"], netns=pod_netns, check=False)
    return rules.stdout if rules.returncode == 0 else ""


@functools.cache
def counted_by_generation() -> bool:
    """True when this machine's ``iptables`` writes nftables rules, which the generation counts."""
    found = shutil.which(probe.IPTABLES[0])
    return found is not None and "nft" in os.path.basename(os.path.realpath(found))


@dataclass
class TableMemory:
    """Namespace path -> [device, inode, generation, table] as earlier passes of the machine
    read them; ``keep`` writes what this call read, with the entries of namespaces still there."""

    path: str = MEMORY_FILE
    _known: dict[str, list] | None = None
    _learned: dict[str, list] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def rules(self, pod_netns: str) -> str:
        """The pod's mangle table: remembered while its namespace's rules are unchanged, else read."""
        if not counted_by_generation():
            return mangle_rules(pod_netns)
        path = namespace_path(pod_netns)
        identity, generation = namespace_identity(path), rules_generation(pod_netns)
        if identity is None or generation is None:
            return mangle_rules(pod_netns)
        entry = _whole(self._entries().get(path))
        if entry is not None and entry[:3] == [*identity, generation]:
            return entry[3]
        table = mangle_rules(pod_netns)
        # A table read while something changed the rules is not the generation's.
        if table and rules_generation(pod_netns) == generation:
            with self._lock:
                self._learned[path] = [*identity, generation, table]
        return table

    def take_learned(self) -> dict[str, list]:
        """What this call read and did not keep yet, handed over (a second process's, which its
        parent ``absorb``s)."""
        with self._lock:
            learned, self._learned = self._learned, {}
        return learned

    def absorb(self, learned: dict[str, list]) -> None:
        """What another process of this call read (``take_learned``), kept with this one's."""
        with self._lock:
            self._learned.update(learned)

    def keep(self) -> None:
        """Write what this call read, and what the file held of namespaces still there."""
        learned = self.take_learned()
        if not learned:
            return
        kept = {**self._entries(), **learned}
        kept = {path: entry for path, entry in kept.items()
                if _whole(entry) is not None and namespace_identity(path) == tuple(entry[:2])}
        try:
            write_memory(self.path, {"tables": kept})
        except OSError:
            return  # not written: the next pass reads the tables with a process, no more
        with self._lock:
            self._known = kept

    def _entries(self) -> dict[str, list]:
        with self._lock:
            if self._known is None:
                tables = read_memory(self.path).get("tables")
                self._known = tables if isinstance(tables, dict) else {}
            return self._known


def _whole(entry: object) -> list | None:
    """``entry`` if it is one as ``rules`` writes them (a file of another version may hold others)."""
    return entry if isinstance(entry, list) and len(entry) == 4 and isinstance(entry[3], str) else None
