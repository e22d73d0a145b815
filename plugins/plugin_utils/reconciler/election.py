"""Pure rules of the reconcilers' leader election through one ``coordination.k8s.io/v1`` Lease.

Owns when a reconciler may start runs, and what it does with the Lease next; no threads, no
I/O, no clock of its own (``now`` is seconds of a monotonic clock), so tests drive it with a
fake one. The rules are client-go's, and they keep two leaders from ever starting runs at
the same time, without trusting anybody's wall clock:

- A follower measures a holder's lease on its own clock from when it *saw* the Lease change
  (its resourceVersion), and takes it only after ``duration`` seconds without a change, or
  at once when nobody holds it (a leader that stopped released it).
- A leader leads until ``renew_deadline`` seconds after it *sent* its last successful write,
  shorter than ``duration``; so it has stopped starting runs before any follower, which
  saw that write only after it was sent, may take the Lease.
- Anything else (a failed read or write, a conflict) changes nothing: a leader that cannot
  renew stops at its deadline; a Lease another reconciler holds stops ours at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CREATE, TAKE, RENEW, WAIT = "create", "take", "renew", "wait"


@dataclass(frozen=True)
class LeaseTiming:
    """The ``dtservice_daemon_lease_*`` seconds."""

    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def check(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError("the lease needs 0 < retry_period_seconds < renew_deadline_seconds < duration_seconds")


@dataclass(frozen=True)
class Held:
    """What a read of the Lease showed."""

    holder: str
    duration: float
    version: str

    @classmethod
    def of(cls, lease: Mapping[str, Any]) -> Held:
        spec = lease.get("spec") or {}
        return cls(holder=spec.get("holderIdentity") or "", duration=float(spec.get("leaseDurationSeconds") or 0),
                   version=str((lease.get("metadata") or {}).get("resourceVersion") or ""))


class Election:
    """One reconciler's view of the Lease: whether it leads, and what to write next."""

    def __init__(self, identity: str, *, timing: LeaseTiming) -> None:
        self.identity = identity
        self.timing = timing
        self._until: float | None = None
        self._seen: tuple[str, float] | None = None  # the Lease's version, and when it was first seen

    def leading(self, *, now: float) -> bool:
        return self._until is not None and now < self._until

    def until(self) -> float | None:
        """Until when this reconciler leads, if it led since its last write."""
        return self._until

    def observe(self, held: Held | None, *, now: float) -> str:
        """A read of the Lease (None: there is none); returns what to do with it."""
        if held is None:
            return CREATE
        if self._seen is None or self._seen[0] != held.version:
            self._seen = (held.version, now)
        if held.holder == self.identity:
            return RENEW
        if not held.holder or now - self._seen[1] >= held.duration:
            return TAKE
        self._until = None  # another reconciler holds a lease that has not run out: it leads
        return WAIT

    def written(self, *, sent: float) -> None:
        """Our create, take or renew that was sent at ``sent`` succeeded."""
        self._until = sent + self.timing.renew_deadline

    def released(self) -> None:
        self._until = None
