"""When a dtService's WireGuard key pair is due for a new one. Pure, no I/O.

Owns the rule that turns what a dtService and its key Secret say into a reason to rotate:
a user's request (``contract.ROTATE_KEY_ANNOTATION`` holding a value that
``contract.KEY_ROTATED_ANNOTATION`` does not record as served yet), else the current key's age
against a configured maximum. The reason travels with the staged key (the Secret's
``contract.NEXT_KEY_REASON_ANNOTATION``) to the agent that puts the key into use, which records
a request as served and says why in its Event. Also the time format of
``contract.KEY_CREATED_ANNOTATION``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract

AGE_REASON = "age"
REQUEST_PREFIX = "request:"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC, to the second, as Kubernetes writes its own timestamps."""
    return moment.astimezone(datetime.UTC).strftime(_TIME_FORMAT)


def parse_time(text: Any) -> datetime.datetime | None:
    """A time ``format_time`` (or Kubernetes) wrote; None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


def key_created(secret: Mapping[str, Any]) -> datetime.datetime | None:
    """When the Secret's current key was made: its annotation, else (a Secret made before keys
    were dated) the Secret's own creation."""
    meta = secret.get("metadata") or {}
    return parse_time((meta.get("annotations") or {}).get(contract.KEY_CREATED_ANNOTATION)) \
        or parse_time(meta.get("creationTimestamp"))


def reason_to_rotate(*, service: Mapping[str, Any], created: datetime.datetime | None, now: datetime.datetime,
                     max_age: float | None) -> str | None:
    """Why the dtService's key should be replaced now, or None. A request not served yet comes
    first; a key without a known creation time is never too old."""
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    requested = annotations.get(contract.ROTATE_KEY_ANNOTATION)
    if isinstance(requested, str) and requested and requested != annotations.get(contract.KEY_ROTATED_ANNOTATION):
        return REQUEST_PREFIX + requested
    if max_age and created is not None and (now - created).total_seconds() >= max_age:
        return AGE_REASON
    return None


def requested_value(reason: str | None) -> str | None:
    """The annotation value a reason serves (None for a rotation by age)."""
    if reason and reason.startswith(REQUEST_PREFIX):
        return reason[len(REQUEST_PREFIX):]
    return None


def describe(reason: str | None, *, max_age: float | None = None) -> str:
    """The Event's words for a rotation's reason; never a key."""
    requested = requested_value(reason)
    if requested is not None:
        return f"asked for with {contract.ROTATE_KEY_ANNOTATION}={requested[:100]!r}"
    if reason == AGE_REASON:
        return "the key was older than the configured maximum age" + (f" ({max_age:.0f}s)" if max_age else "")
    return "a next key was staged in the key Secret"
