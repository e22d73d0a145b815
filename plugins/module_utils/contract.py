"""The contract: every fact the CRDs, the inventory, the modules, the daemon and the status
callback must agree on, written once.

Owns the API group, version and kinds; the status words (one enum, and the sets derived
from it); the labels, annotation, finalizer and key Secret the provisioner writes; the rule
that names a peer and its WireGuard interface; and the shapes of a federation node and of a
domain with their defaults. Everything else imports these; ``tests/unit/test_contract.py``
checks the CRDs under ``roles/dtservice_cluster/files`` against them.

Standard library only and free of I/O, so that any layer may import it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

# ------------------------------------------------------------------ group, version, kinds

GROUP = "sid.sightlineinnovation.com"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
SERVICE_KIND = "dtService"
DOMAIN_KIND = "dtDomain"
SERVICES = "dtservices"
DOMAINS = "dtdomains"

# ------------------------------------------------------------------ what the provisioner writes

PROVISIONER = "dtservice-provisioner"
# The server-side apply field manager and the source of every Event.
FIELD_MANAGER = PROVISIONER
EVENT_SOURCE = PROVISIONER
MANAGED_BY = {"app.kubernetes.io/managed-by": PROVISIONER}
# Holds a dtService until the next pass has taken its peer out of the network.
FINALIZER = f"{GROUP}/teardown"
# A dtService's key Secret lives in KEYS_NAMESPACE, one namespace per member cluster that no
# tenant role reaches: a pass lists every key of the cluster at once, and a tenant can neither
# read nor rewrite a private key. Labelled with the dtService's name and namespace; its
# owner's uid is an annotation (an owner reference across namespaces counts as absent, and
# the garbage collector would delete the Secret).
KEYS_NAMESPACE = "dtservice-keys"
KEY_SECRET_LABEL = f"{GROUP}/dtservice"
KEY_NAMESPACE_LABEL = f"{GROUP}/namespace"
OWNER_UID_ANNOTATION = f"{GROUP}/owner-uid"
PUBLIC_KEY_ANNOTATION = f"{GROUP}/public-key"
# A dtService's tunnel health, as `kubectl get dtservices` prints it (rules/health.py): the
# number of peers on its interface and the time of the newest handshake with any of them.
PEERS_ANNOTATION = f"{GROUP}/peers"
HANDSHAKE_ANNOTATION = f"{GROUP}/latest-handshake"
PRIVATE_KEY_FIELD = "privatekey"
# Key rotation. A user asks for a new key pair by giving ROTATE_KEY_ANNOTATION a value the
# dtService's KEY_ROTATED_ANNOTATION does not hold yet; the provisioner records the value there
# when the new key is in use, so each distinct value rotates once. While a rotation is under
# way the key Secret also holds the next private key (NEXT_PRIVATE_KEY_FIELD) and why it was
# made (NEXT_KEY_REASON_ANNOTATION); KEY_CREATED_ANNOTATION dates the current key, for the
# rotation of keys older than a configured age.
ROTATE_KEY_ANNOTATION = f"{GROUP}/rotate-key"
KEY_ROTATED_ANNOTATION = f"{GROUP}/key-rotated"
KEY_CREATED_ANNOTATION = f"{GROUP}/key-created"
NEXT_KEY_REASON_ANNOTATION = f"{GROUP}/next-key-reason"
NEXT_PRIVATE_KEY_FIELD = "nextprivatekey"
# The reason of the Event that tells a rotation is done (it carries no key).
KEY_ROTATED_REASON = "KeyRotated"
# Pod and peer labels: ``sid.sightline.dtservice.<peer id>: server|client``.
LABEL_PREFIX = "sid.sightline.dtservice."
SERVER = "server"
CLIENT = "client"


# The environment mark of one daemon run: the daemon kills what carries it when the run
# overstays its time; what must outlive a run (wireguard-go) is started without it.
RUN_MARK = "DTSERVICE_RUN_ID"


def key_secret_name(namespace: str, service: str) -> str:
    """The Secret in KEYS_NAMESPACE holding the private key of dtService ``service`` of
    ``namespace`` (a namespace's name has no dot, so no two dtServices share one)."""
    return f"{namespace}.{service}"


def key_secret_owner(name: str) -> tuple[str, str]:
    """The (namespace, dtService) whose key the Secret ``name`` holds: ``key_secret_name`` read back."""
    namespace, _dot, service = name.partition(".")
    return namespace, service


def legacy_key_secret_name(service: str) -> str:
    """Where releases before 0.5.0 kept a dtService's key: a Secret in its own namespace, moved
    to KEYS_NAMESPACE by the first pass that finds none there (control/secrets.py)."""
    return f"dtservice-{service}-wg"


# ------------------------------------------------------------------ status words


class Status(str, Enum):  # noqa: UP042 - StrEnum needs Python 3.11; targets may run older
    """Every word a dtService's ``status`` may hold (the CRD's enum); the reason is in an Event."""

    CONNECTED = "Connected"
    PENDING = "Pending"
    WAITING_FOR_POD = "WaitingForPod"
    POD_ELSEWHERE = "PodElsewhere"
    POD_FAILED = "PodFailed"
    POD_REFUSED = "PodRefused"
    DOMAIN_NOT_FOUND = "DomainNotFound"
    NOT_A_MEMBER = "NotAMember"
    NETWORK_NAME_TAKEN = "NetworkNameTaken"
    POOL_EXHAUSTED = "PoolExhausted"
    SUBNET_EXHAUSTED = "SubnetExhausted"
    PORTS_EXHAUSTED = "PortsExhausted"
    SERVER_UNREACHABLE = "ServerUnreachable"
    FAILED = "Failed"

    # Written into JSON, YAML, Events and f-strings as the bare word.
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


STATES = frozenset(status.value for status in Status)
# Nothing to do until something changes: not requeued, no Warning.
QUIET = frozenset({Status.CONNECTED, Status.PENDING})
# The pod (or the server) is not there yet: a normal Event, not a Warning.
WAITING = frozenset({Status.WAITING_FOR_POD, Status.PENDING})
# Say what is wrong better than a generic Failed does, so a failed task does not overwrite them.
SPECIFIC = STATES - {Status.CONNECTED, Status.PENDING, Status.FAILED}
# Not settled, and the object that will settle it may raise no event the node's watches see
# (a server on another node, a first handshake, a failed run): the reconciler daemon runs the
# node again, with backoff.
RETRY = frozenset({Status.PENDING, Status.SERVER_UNREACHABLE, Status.FAILED})

# ------------------------------------------------------------------ names

# Linux IFNAMSIZ is 16 including the NUL terminator: "dt" and 10 hex digits fit.
INTERFACE_PATTERN = re.compile(r"^dt[0-9a-f]{10}$")
# Domain-separation tags: changing them renames every label or interface in a live
# federation, so they are versioned rather than edited.
_PEER_ID_TAG = "sid.sightline.dtservice/peer-id/v1\0"
_IFACE_TAG = "sid.sightline.dtservice/interface/v1\0"


def _text(value: object, *, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def peer_id(*, uid: str) -> str:
    """The 32-hex-digit peer id of a Kubernetes object UID.

    Hashed rather than copied so the label does not expose (or equal) the UID while still
    being stable for the object's lifetime; a recreated object gets a new UID and so a new
    id, which is what makes a stale label recognisable.
    """
    return hashlib.sha256((_PEER_ID_TAG + _text(uid, what="object UID")).encode("utf-8")).hexdigest()[:32]


def peer_label_key(*, uid: str) -> str:
    """The pod/peer label key ``sid.sightline.dtservice.<peer id>``."""
    return LABEL_PREFIX + peer_id(uid=uid)


def interface_name(*, namespace: str, network: str, node_netns: str | None = None) -> str:
    """The WireGuard interface of (namespace, network): ``dt`` + 10 hex digits.

    Interfaces are made in the node's namespace before they move into the pod, and
    wireguard-go keeps its control sockets in one machine-wide directory, so the name must
    be unique across every node of a machine, not just within a pod; 40 bits of hash keep
    collisions negligible. ``node_netns`` (the namespace holding the node's address, when it
    is not the host's) joins the hash, so federations sharing one machine (test beds) do not
    share names; without it the name is what a real node computes.
    """
    ns = _text(namespace, what="namespace")
    net = _text(network, what="network name")
    # Length-prefixing makes ("a", "bc") and ("ab", "c") hash differently.
    material = f"{_IFACE_TAG}{len(ns)}:{ns}{len(net)}:{net}"
    if node_netns:
        material += f"{len(node_netns)}:{node_netns}"
    return "dt" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:10]


# ------------------------------------------------------------------ a federation node

DEFAULT_PORT_RANGE = "51820-51919"
POD_LOOKUP_METHODS = ("cri", "cgroup")
# containerd's socket; CRI-O's is unix:///var/run/crio/crio.sock.
DEFAULT_RUNTIME_ENDPOINT = "unix:///run/containerd/containerd.sock"
DEFAULT_CRICTL = "crictl"


@dataclass(frozen=True)
class NodeRef:
    """A federation node: one namespace of one cluster, reached with its kubeconfig, whose
    pods run on the Kubernetes nodes of one machine. The inventory's ``dtservice_node_*``
    variables and the modules' ``nodes``/``federation`` options are this shape."""

    name: str
    namespace: str
    address: str
    kubeconfig: str | None = None
    context: str | None = None
    port_range: str = DEFAULT_PORT_RANGE
    netns: str | None = None
    # The Kubernetes nodes whose pods this federation node's agent serves (default: its name),
    # and how the agent asks their container runtime for a pod's network namespace.
    kubelet_nodes: tuple[str, ...] = ()
    # That kubelet's own kubeconfig on the machine: with it, a pass lists the pods of those
    # Kubernetes nodes as their kubelet, one LIST per Kubernetes node for every namespace.
    kubelet_kubeconfig: str | None = None
    runtime_endpoint: str = DEFAULT_RUNTIME_ENDPOINT
    pod_lookup: tuple[str, ...] = POD_LOOKUP_METHODS
    crictl: str = DEFAULT_CRICTL

    @property
    def served_nodes(self) -> tuple[str, ...]:
        return self.kubelet_nodes or (self.name,)

    def interface_of(self, network: str) -> str:
        """The interface of this node's dtService ``network`` (``interface_name``)."""
        return interface_name(namespace=self.namespace, network=network, node_netns=self.netns)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> NodeRef:
        """A node from module parameters or a plan's node dict; absent or empty values take
        their defaults."""
        values: dict[str, Any] = {}
        for spec in fields(cls):
            value = params.get(spec.name)
            if value in (None, "", []):
                continue
            values[spec.name] = tuple(value) if spec.name in _LIST_FIELDS else value
        return cls(**values)

    def to_params(self) -> dict[str, Any]:
        return {spec.name: list(value) if isinstance(value := getattr(self, spec.name), tuple) else value
                for spec in fields(self)}


_LIST_FIELDS = ("kubelet_nodes", "pod_lookup")
_REQUIRED_FIELDS = ("name", "namespace", "address")
# The argument spec of a node, derived from NodeRef: the modules' ``nodes`` and ``federation``.
NODE_OPTIONS: dict[str, dict[str, Any]] = {}
for _field in fields(NodeRef):
    _option: dict[str, Any] = {"type": "path" if _field.name in ("kubeconfig", "kubelet_kubeconfig") else "str"}
    if _field.name in _REQUIRED_FIELDS:
        _option["required"] = True
    elif _field.name in _LIST_FIELDS:
        _option.update(type="list", elements="str")
        if isinstance(_field.default, tuple) and _field.default:
            _option["default"] = list(_field.default)
    elif _field.default is not None:
        _option["default"] = _field.default
    if _field.name == "pod_lookup":
        _option["choices"] = list(POD_LOOKUP_METHODS)
    NODE_OPTIONS[_field.name] = _option


def node_params(*, host: str, host_vars: Mapping[str, Any]) -> dict[str, Any]:
    """A node's parameters from an inventory host's ``dtservice_node_*`` variables (the node
    is named after the host unless ``dtservice_node_name`` says otherwise)."""
    missing = [f"dtservice_node_{name}" for name in _REQUIRED_FIELDS[1:] if not host_vars.get(f"dtservice_node_{name}")]
    if missing:
        raise ValueError(f"host {host} lacks {', '.join(missing)}")
    given = {spec.name: host_vars.get(f"dtservice_node_{spec.name}") for spec in fields(NodeRef)}
    return NodeRef.from_params({**given, "name": given["name"] or host}).to_params()


# ------------------------------------------------------------------ a domain


@dataclass(frozen=True)
class Member:
    """A member of a domain, as its dtDomain's ``spec.members`` lists it."""

    name: str
    namespace: str
    address: str
    port_range: str = DEFAULT_PORT_RANGE


@dataclass(frozen=True)
class Domain:
    """A dtDomain's spec: members in order (the first is home), pool and WireGuard settings."""

    name: str
    members: tuple[Member, ...]
    pool: str = "100.96.0.0/12"
    subnet_prefix: int = 24
    persistent_keepalive: int = 25
    mtu: int = 1420
    # How long a network's hub may be without its pod before a client takes over the network.
    failover_grace_seconds: int = 30

    @property
    def home(self) -> Member:
        return self.members[0]

    def member(self, *, name: str | None = None, namespace: str | None = None) -> Member | None:
        for candidate in self.members:
            if (name is None or candidate.name == name) and (namespace is None or candidate.namespace == namespace):
                return candidate
        return None

    def to_spec(self) -> dict[str, Any]:
        return {"members": [{"name": m.name, "namespace": m.namespace, "address": m.address,
                             "portRange": m.port_range} for m in self.members],
                **{spec_name: getattr(self, attribute) for attribute, spec_name in DOMAIN_SPEC_FIELDS.items()}}

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Domain:
        spec = obj["spec"]
        members = tuple(Member(name=m["name"], namespace=m["namespace"], address=m["address"],
                               **({"port_range": m["portRange"]} if m.get("portRange") else {}))
                        for m in spec["members"])
        settings = {attribute: spec[spec_name] for attribute, spec_name in DOMAIN_SPEC_FIELDS.items()
                    if spec.get(spec_name) is not None}
        return cls(name=obj["metadata"]["name"], members=members, **settings)


# A domain's settings: attribute (and inventory key) -> the dtDomain spec field it is written to.
DOMAIN_SPEC_FIELDS = {"pool": "pool", "subnet_prefix": "subnetPrefix",
                      "persistent_keepalive": "persistentKeepalive", "mtu": "mtu",
                      "failover_grace_seconds": "failoverGraceSeconds"}
