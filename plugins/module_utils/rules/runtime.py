"""What the container runtime and the kernel say about pods, read from their output (pure).

Owns turning ``crictl pods -o json`` into pod UID -> ready sandboxes, ``crictl inspectp -o
json`` into sandbox -> network namespace path, a process's ``/proc/PID/cgroup`` into the
pod UID it names (cgroupfs and systemd drivers), ``ip -j addr`` into addresses, and a Pod
object into its IPs. ``data.podnet`` runs the commands and reads /proc.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["POD_UID_LABEL", "cgroup_pod_uid", "cri_network_paths", "cri_sandboxes", "local_addresses", "pod_ips"]

POD_UID_LABEL = "io.kubernetes.pod.uid"
_CGROUP_POD = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?(?:/|$)")


def cri_sandboxes(listing: str) -> dict[str, list[str]]:
    """Pod UID -> ids of its ready sandboxes, from ``crictl pods -o json``."""
    found: dict[str, list[str]] = {}
    for item in (json.loads(listing or "{}").get("items") or []):
        if item.get("state") != "SANDBOX_READY":
            continue
        uid = (item.get("labels") or {}).get(POD_UID_LABEL) or (item.get("metadata") or {}).get("uid")
        if uid:
            found.setdefault(uid, []).append(item["id"])
    return found


def cri_network_paths(inspected: str) -> dict[str, str]:
    """Sandbox id -> network namespace path, from ``crictl inspectp -o json ID...`` (one JSON
    document per sandbox, one after another, or one array of them: crictl prints either)."""
    decoder, position, documents = json.JSONDecoder(), 0, []
    text = inspected.strip()
    while position < len(text):
        document, end = decoder.raw_decode(text, position)
        documents += document if isinstance(document, list) else [document]
        position = end
        while position < len(text) and text[position].isspace():
            position += 1
    paths = {}
    for document in documents:
        sandbox = (document.get("status") or {}).get("id")
        spec = ((document.get("info") or {}).get("runtimeSpec") or {}).get("linux") or {}
        path = next((n.get("path") for n in spec.get("namespaces") or [] if n.get("type") == "network"), None)
        if sandbox and path:
            paths[sandbox] = path
    return paths


def cgroup_pod_uid(cgroup_text: str) -> str | None:
    """The pod UID a process's /proc/PID/cgroup names, if any."""
    for line in cgroup_text.splitlines():
        match = _CGROUP_POD.search(line.split(":", 2)[-1])
        if match:
            return match.group(1).replace("_", "-")
    return None


def local_addresses(links: Iterable[Mapping[str, Any]]) -> set[str]:
    """The addresses of links as ``ip -j addr`` shows them."""
    return {info["local"] for link in links for info in link.get("addr_info", []) if "local" in info}


def pod_ips(pod: Mapping[str, Any]) -> set[str]:
    """The IPs the API server gives a Pod object (``status.podIP`` and ``status.podIPs``)."""
    status = pod.get("status") or {}
    ips = {entry.get("ip") for entry in status.get("podIPs") or []} | {status.get("podIP")}
    return {str(ipaddress.ip_address(ip)) for ip in ips if ip}
