"""The rules of a dtDomain's network registry (its home copy's ``status.networks``). Pure, no I/O.

Owns what a registry entry holds and what is read out of it: the networks of a dtDomain
object, a new network's entry (its subnet from the domain's pool, its server's UDP port from
the server node's range, away from the ports that node's other networks listen on), the
ports a node serves across registries, and the port of an entry's endpoint. Also the
failover rules: the hub's address (``.1`` unless a failover named another), how long the
hub's pod has been gone and whether that is past the domain's grace, and the entry of a
network handed to a client, which keeps its own address and gets a port of its own node.
Reading and writing the registry is ``control/registry.py``'s job.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import addressing


def networks_of(domain_object: Mapping[str, Any] | None) -> dict[str, Any]:
    """The registry of a dtDomain object (network name -> entry); empty when it has none."""
    return (((domain_object or {}).get("status") or {}).get("networks")) or {}


def endpoint_port(endpoint: str) -> int:
    """The UDP port of an entry's ``address:port`` endpoint."""
    return int(endpoint.rsplit(":", 1)[1])


def ports_served(*, node: str, registries: Iterable[Mapping[str, Any]]) -> list[int]:
    """The UDP ports of the networks ``node`` serves in ``registries``: all of them listen on
    its address, whichever domain they belong to."""
    return [endpoint_port(n["endpoint"]) for registry in registries for n in registry.values()
            if n["server"]["node"] == node]


def yields_port(*, domain: str, name: str, entry: Mapping[str, Any],
                others: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether network ``name`` of ``domain`` must give its endpoint up: a network of another
    domain (``others``: domain -> registry) listens on the same address and port and sorts
    before it by (domain, name). Of two registrations that raced, exactly one yields."""
    return any(other_entry.get("endpoint") == entry["endpoint"] and (other_domain, other_name) < (domain, name)
               for other_domain, registry in others.items() for other_name, other_entry in registry.items())


def new_network_entry(*, name: str, domain: contract.Domain, server: contract.Member, server_id: str,
                      networks: Mapping[str, Any], ports_taken: Iterable[int]) -> dict[str, Any]:
    """The registry entry of network ``name`` served by ``server`` (peer id ``server_id``):
    the lowest free subnet of the domain's pool beside ``networks``' subnets, and the lowest
    port of the server's range not in ``ports_taken``. Raises ``AllocationError`` when either
    is exhausted."""
    subnet = addressing.allocate_subnet(pool=domain.pool, prefix=domain.subnet_prefix,
                                        taken=[n["subnet"] for n in networks.values()])
    port = addressing.allocate_port(port_range=server.port_range, taken=ports_taken)
    return {"subnet": subnet, "endpoint": f"{server.address}:{port}",
            "server": {"node": server.name, "namespace": server.namespace, "name": name, "id": server_id}}


# -- failover ----------------------------------------------------------------------------------

ABSENT_SINCE = "hubAbsentSince"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
EPOCH = datetime(1970, 1, 1)  # naive: the registry's times are UTC


def hub_address(entry: Mapping[str, Any]) -> str:
    """The hub's overlay address: the one a failover recorded, else the subnet's ``.1``."""
    return entry["server"].get("address") or addressing.server_address(subnet=entry["subnet"])


def timestamp(epoch: float) -> str:
    """``epoch`` as the RFC 3339 time (UTC, whole seconds) the registry records."""
    return (EPOCH + timedelta(seconds=int(epoch))).strftime(TIME_FORMAT)


def failover_in(entry: Mapping[str, Any], *, grace: float, now: float) -> float | None:
    """Seconds until the network is handed to a client because its hub's pod is gone (0 or
    less: now); None while the hub is not recorded as gone. An unreadable time counts as now."""
    since = entry.get(ABSENT_SINCE)
    if not since:
        return None
    try:
        started = float(calendar.timegm(datetime.strptime(since, TIME_FORMAT).timetuple()))
    except (TypeError, ValueError):
        started = now
    return started + grace - now


def with_absence(entry: Mapping[str, Any], *, since: str | None) -> dict[str, Any]:
    """``entry`` recording that its hub's pod is gone since ``since`` (None: it is back)."""
    updated = {key: value for key, value in entry.items() if key != ABSENT_SINCE}
    if since is not None:
        updated[ABSENT_SINCE] = since
    return updated


def handed_over_entry(*, entry: Mapping[str, Any], successor: contract.Member, name: str, successor_id: str,
                      address: str, ports_taken: Iterable[int]) -> dict[str, Any]:
    """The entry of a network whose hub is now the client ``successor_id`` on ``successor``:
    the same subnet; the client's own ``address`` (the other clients keep theirs, so the hub
    serves from where it already was); an endpoint on the successor's node at the lowest
    port of its range not in ``ports_taken``; no absence."""
    port = addressing.allocate_port(port_range=successor.port_range, taken=ports_taken)
    return {"subnet": entry["subnet"], "endpoint": f"{successor.address}:{port}",
            "server": {"node": successor.name, "namespace": successor.namespace, "name": name,
                       "id": successor_id, "address": address}}
