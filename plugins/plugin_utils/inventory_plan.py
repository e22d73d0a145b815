"""The federation plan of an inventory group, read from the controller's inventory: what the
``dtservice_plan`` lookup returns and the ``dtservice_plan`` action keeps as a fact.

Owns only the reading of each host's ``dtservice_*`` variables (and its machine, from its
connection); the plan itself is ``rules/plan.py``'s."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import plan


class InventoryPlanError(ValueError):
    """The inventory declares no plan: an empty group or a bad declaration."""


def _plain(value: Any) -> Any:
    """``value`` as plain dicts and lists. Ansible hands a variable over in containers that
    template an item again at every access, and the plan looks up each node in every
    domain's members: 10,000 renderings at 100 nodes, a third of the plan."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


# What makes Jinja read a string as a template: its default delimiters, or a first line
# that sets others.
_TEMPLATE_MARKS = ("{{", "{%", "{#")
_TEMPLATE_HEADER = "#jinja2:"


def _may_template(value: Any) -> bool:
    """Whether ``value`` holds a string that templating could change."""
    if isinstance(value, str):
        return value.startswith(_TEMPLATE_HEADER) or any(mark in value for mark in _TEMPLATE_MARKS)
    if isinstance(value, Mapping):
        return any(_may_template(key) or _may_template(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return any(_may_template(item) for item in value)
    return False


class HostVariables(Mapping):
    """An inventory host's variables as a task reads them through ``hostvars``, each templated
    only where it holds a template: ``hostvars[host]`` templates every value asked of it, which
    was most of reading the plan (sixteen variables of 100 hosts: 40 ms), though inventories
    seldom hold templates. Read once: ``hostvars`` builds a host's variables anew at each access."""

    def __init__(self, hostvars: Any, host: str) -> None:
        self._hostvars, self._host = hostvars, host
        self._raw = hostvars.raw_get(host)
        self._templating: Mapping[str, Any] | None = None

    def __getitem__(self, key: str) -> Any:
        value = self._raw[key]
        if not _may_template(value):
            return value
        if self._templating is None:
            self._templating = self._hostvars[self._host]
        return self._templating[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def inventory_plan(*, variables: Mapping[str, Any], group: str = "federation",
                   limit: Sequence[str] | None = None) -> dict[str, Any]:
    """The plan of ``group``'s hosts, from a task's ``variables`` (``groups`` and ``hostvars``),
    as plain JSON values; ``limit``: the hosts of a limited run (see the lookup's ``limit``).
    Raises ``InventoryPlanError`` with the reason, before anything is contacted."""
    hosts = variables.get("groups", {}).get(group)
    if not hosts:
        raise InventoryPlanError(f"dtservice_plan: inventory group {group!r} has no hosts")
    hostvars = variables["hostvars"]
    nodes, services, machines = {}, {}, {}
    domains: list[Any] = []
    for host in hosts:
        facts = HostVariables(hostvars, host)
        try:
            nodes[host] = contract.node_params(host=host, host_vars=facts)
        except ValueError as error:
            raise InventoryPlanError(f"dtservice_plan: {error}") from None
        services[host] = _plain(facts.get("dtservice_services") or [])
        if host == hosts[0]:
            domains = _plain(facts.get("dtservice_domains") or [])
        # Nodes driven through a local connection share this machine: one agent run serves them.
        machines[host] = ("localhost" if facts.get("ansible_connection") == "local"
                          else facts.get("ansible_host") or host)
    try:
        computed = plan.federation_plan(hosts=list(hosts), nodes=nodes, services=services, domains=domains,
                                        machines=machines,
                                        limit=None if limit is None else list(limit))
    except (plan.PlanError, KeyError) as error:
        raise InventoryPlanError(f"dtservice_plan: {error}") from None
    return json.loads(json.dumps(computed))


# Where the dtservice_plan action keeps the plan for the later plays of a run: a fact of the
# controller (delegate_to: localhost, delegate_facts: true), as the project's playbooks do.
PLAN_FACT = "dtservice_plan"
PLAN_HOST = "localhost"


def kept_plan(variables: Mapping[str, Any]) -> Mapping[str, Any]:
    """The plan the ``dtservice_plan`` action kept on the controller, from a task's
    ``variables``, as it was stored. Not templated again: a fact an action returned holds
    values, no templates, and templating it would walk and tag each of them (0.1 s of a task
    at 100 nodes). Raises ``InventoryPlanError`` when there is none."""
    hostvars = variables.get("hostvars")
    stored = hostvars.raw_get(PLAN_HOST) if hostvars is not None else {}
    found = (stored.get("ansible_facts") or {}).get(PLAN_FACT) if isinstance(stored, Mapping) else None
    if not isinstance(found, Mapping):
        raise InventoryPlanError(f"no federation plan on the controller: run sightline.dtservice.dtservice_plan "
                                 f"first (delegate_to: {PLAN_HOST}, delegate_facts: true)")
    return found
