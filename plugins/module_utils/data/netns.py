"""Commands in network namespaces, for the data plane.

Owns running a command in a network namespace (or in this process's own), with a timeout
and with secrets scrubbed from the error it raises; whether a namespace still exists; and
looking a link up by name in one, and the MTU of the link holding an address. Namespaces
are given as a path (``/var/run/netns/x``, ``/proc/PID/ns/net``) or as an ``ip netns``
name; ``None`` means the namespace this process runs in. Every failure is a ``WireGuardError``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence

__all__ = ["NETNS_DIR", "TIMEOUT", "WireGuardError", "argv_in", "find_link", "namespace_alive", "namespace_path", "run",
           "underlay_mtu"]

NETNS_DIR = "/var/run/netns"
TIMEOUT = 60


class WireGuardError(RuntimeError):
    """A data-plane operation failed; the message is for a human and holds no secret."""


def namespace_path(netns: str) -> str:
    """The path of a namespace given by path or by ``ip netns`` name."""
    return netns if "/" in netns else os.path.join(NETNS_DIR, netns)


def namespace_alive(netns: str) -> bool:
    return os.path.exists(namespace_path(netns))


def argv_in(netns: str | None, argv: list[str]) -> list[str]:
    """``argv`` made to run in ``netns``."""
    # nsenter --net switches only the network namespace: the temp file and the wireguard-go
    # sockets stay visible, unlike `ip netns exec` which also remounts /sys and /etc.
    if netns is None:
        return argv
    return ["nsenter", f"--net={namespace_path(netns)}", "--", *argv]


def run(
    argv: list[str],
    *,
    netns: str | None = None,
    check: bool = True,
    secrets: Sequence[str] = (),
    env: dict[str, str] | None = None,
    input: str | None = None,  # noqa: A002 - subprocess.run's name
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in ``netns``; with ``check``, a non-zero exit raises, quoting its output
    with every one of ``secrets`` replaced."""
    full = argv_in(netns, argv)
    try:
        proc = subprocess.run(
            full,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WireGuardError(f"{' '.join(full)}: {exc}") from None
    if check and proc.returncode != 0:
        raise WireGuardError(
            f"{' '.join(full)} failed (exit {proc.returncode}): "
            f"{_redact(proc.stderr.strip() or proc.stdout.strip(), secrets)}"
        )
    return proc


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def find_link(name: str, netns: str | None) -> dict | None:
    """``ip -j link`` of link ``name`` in ``netns``; None if there is none (or no namespace)."""
    if netns is not None and not namespace_alive(netns):
        return None
    proc = run(["ip", "-j", "link", "show", "dev", name], netns=netns, check=False)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout or "[]")
    return data[0] if data else None


def underlay_mtu(*, address: str, netns: str | None) -> int | None:
    """The MTU of the link holding ``address`` in ``netns`` (the node's underlay link, which
    WireGuard's packets leave by); None if no link there holds it (a NATed address, say)."""
    if netns is not None and not namespace_alive(netns):
        return None
    proc = run(["ip", "-j", "addr", "show"], netns=netns, check=False)
    if proc.returncode != 0:
        return None
    for link in json.loads(proc.stdout or "[]"):
        if any(info.get("local") == address for info in link.get("addr_info", [])):
            return link.get("mtu")
    return None
