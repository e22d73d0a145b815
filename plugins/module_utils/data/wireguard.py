"""The dtService data plane: WireGuard interfaces inside pod network namespaces.

This module owns every change made to a live interface's configuration, through ``ip``
and ``wg`` run as subprocesses or rtnetlink requests made in this process (no extra Python
dependency on the nodes), and reading one:

- ``ensure_interface`` has the link made where the node's address lives (``wggo``),
  moved into the pod's namespace, configured (a UAPI ``set`` on wireguard-go's control
  socket, ``wg setconf`` for kernel WireGuard), given its address and brought up (over
  rtnetlink: ``netns.raise_link``); on later runs it
  changes only what differs (``rules.probe`` says what), never by recreating the
  interface, so live tunnels are not disturbed: new or changed peers through ``wg
  addconf``, departed ones through ``wg set ... remove``;
- ``restart_handshake`` configures one peer afresh so its first handshake goes out now;
- ``remove_interface`` deletes it, its MSS clamp and anything ``wireguard-go`` left behind;
- ``read_interface`` reads an interface's whole state, in this process but for its clamp
  rules (``netns.snapshot``, ``wggo.configuration``; the clamps from the pod's mangle table,
  which ``mangle`` reads); ``wireguard_state`` its WireGuard
  side alone, all in this process; ``interface_exists``, ``interface_public_key`` and
  ``latest_handshakes`` read parts of it.

Each IPv4 interface comes with a TCP MSS clamp in the pod's mangle table (``iptables``, the
nft or legacy one the machine has): the SYNs the pod sends or forwards into the interface
announce a segment size that fits the interface's MTU and, when the node's underlay link has
a smaller MTU than the interface's plus WireGuard's headers, WireGuard's packets on that link
(``probe.clamp_mss``), so TCP keeps working where big packets would be lost.

Changes to one interface name are serialised machine-wide by a lock file. Namespaces are
given as in ``netns``; ``None`` for the node means the namespace this process runs in.

Secrets: the private key only travels over wireguard-go's control socket (root's alone), or
in a 0600 file in a private temporary directory (removed right after ``wg`` reads it, also
when anything fails); it is never in a process's argv, a return value or an exception
message (``wg``'s stderr is scrubbed before it is quoted).

Why live changes do not use ``wg syncconf``: wireguard-go closes and reopens its UDP
socket whenever ``listen_port`` is set, even to the same port, dropping what arrives
meanwhile, and wg-tools' setconf and syncconf always send ListenPort (and reset an absent
PrivateKey), so syncconf would rebind the socket under every tunnel of the interface on
each peer change.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import ipaddress
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Sequence

from ansible_collections.sightline.dtservice.plugins.module_utils.data import wggo
from ansible_collections.sightline.dtservice.plugins.module_utils.data.mangle import TableMemory, mangle_rules
from ansible_collections.sightline.dtservice.plugins.module_utils.data.netns import (
    Snapshot,
    WireGuardError,
    delete_link,
    find_link,
    namespace_alive,
    raise_link,
    run,
    snapshot,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import probe
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.keys import is_valid_key, public_key_of
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.wgconfig import (
    Peer,
    render_setconf,
    render_uapi_set,
)

__all__ = [
    "Peer",
    "WireGuardError",
    "ensure_interface",
    "interface_exists",
    "interface_public_key",
    "latest_handshakes",
    "read_interface",
    "remove_interface",
    "restart_handshake",
    "wireguard_state",
]

LOCK_DIR = "/run/dtservice/locks"
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _IFNAME.match(name):
        raise WireGuardError(f"bad interface name {name!r}: 1..15 characters of [A-Za-z0-9_.-]")


def _resolve(host: str, port: int) -> list[str]:
    """The addresses a host name resolves to here, as ``wg`` resolves an endpoint's."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return []
    return [str(info[4][0]) for info in infos]


KEY_DIR_PREFIX = "dtwg-"


def sweep_key_files(base: str) -> None:
    """Remove the key directories of runs that are gone: a run killed with SIGKILL cannot
    remove its own, so the next one does (each directory is named after its process)."""
    for entry in os.listdir(base):
        pid = entry[len(KEY_DIR_PREFIX):].partition("-")[0]
        if entry.startswith(KEY_DIR_PREFIX) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(base, entry), ignore_errors=True)


def _with_key_file(text: str, use: Callable[[str], object]) -> None:
    # tmpfs when available so the key never lands on a persistent disk; mkdtemp is 0700.
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    sweep_key_files(base)
    tmpdir = tempfile.mkdtemp(prefix=f"{KEY_DIR_PREFIX}{os.getpid()}-", dir=base)
    try:
        path = os.path.join(tmpdir, "wg.conf")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        use(path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _apply_config(name: str, pod_netns: str, verb: str, text: str, secrets: Sequence[str]) -> None:
    _with_key_file(
        text,
        lambda path: run(["wg", verb, name, path], netns=pod_netns, secrets=secrets),
    )


# ------------------------------------------------------------------------- reading


@dataclasses.dataclass
class PodReading:
    """One reading of a pod's links and of its mangle table, each made on first use, for all
    the interfaces of the pod in one pass (``ensure_interface``): a pod with many networks
    would otherwise be read once for each of them. ``tables``: the machine's memory of mangle
    tables, which spares the process while the pod's rules are unchanged."""

    netns: str
    tables: TableMemory | None = None
    _links: Snapshot | None = None
    _mangle: str | None = None

    def links(self) -> Snapshot:
        if self._links is None:
            self._links = snapshot(self.netns, forwarding=True)
        return self._links

    def mangle(self) -> str:
        if self._mangle is None:
            self._mangle = mangle_rules(self.netns) if self.tables is None else self.tables.rules(self.netns)
        return self._mangle


def read_interface(*, name: str, pod_netns: str, earlier: PodReading | None = None) -> probe.LiveInterface | None:
    """The live state of interface ``name`` in the pod, or None if there is no such link.

    The link, its addresses and the forwarding switches come from the kernel and the
    WireGuard side from wireguard-go's control socket, both read in this process; only the
    clamp rules need a process (``iptables``), and kernel WireGuard ``wg``. ``earlier``: the
    pod's links and mangle table come from that reading."""
    _check_name(name)
    if not namespace_alive(pod_netns):
        return None
    reading = earlier or PodReading(netns=pod_netns)
    seen = reading.links()
    link = seen.link(name)
    if link is None:
        return None
    state = _wireguard_side(name, pod_netns)
    return probe.live_interface(link, wireguard=state, forwarding=seen.forwarding, rules=reading.mangle())


def wireguard_state(*, name: str, pod_netns: str) -> probe.WireGuardState | None:
    """Only the WireGuard side of interface ``name`` in the pod (key, port, peers with their
    handshakes), without a process for wireguard-go: what a wait for a handshake polls.
    None if there is no such link in the pod."""
    _check_name(name)
    if find_link(name, pod_netns) is None:
        return None
    return _wireguard_side(name, pod_netns)


def _wireguard_side(name: str, pod_netns: str) -> probe.WireGuardState:
    configuration = wggo.configuration(name)
    try:
        if configuration is not None:
            return probe.parse_uapi(configuration)
        dump = run(["wg", "show", name, "dump"], netns=pod_netns, check=False)
        if dump.returncode != 0:
            # Only stderr is quoted: stdout holds the private key.
            raise WireGuardError(f"reading interface {name} in {pod_netns} failed: {dump.stderr.strip()}")
        return probe.parse_dump(dump.stdout)
    except ValueError as problem:
        raise WireGuardError(f"reading interface {name} in {pod_netns}: {problem}") from None


def _live_clamps(name: str, pod_netns: str) -> list[str]:
    """The interface's MSS clamp rules in the pod, as ``iptables -S`` prints them."""
    return [line.strip() for line in mangle_rules(pod_netns).splitlines() if probe.is_clamp_of(line, name)]


def interface_exists(*, name: str, pod_netns: str) -> bool:
    """True if a link called ``name`` exists in the pod's network namespace."""
    _check_name(name)
    return find_link(name, pod_netns) is not None


def interface_public_key(*, name: str, pod_netns: str) -> str | None:
    """The live public key of interface ``name`` in the pod, or None if absent or keyless."""
    live = wireguard_state(name=name, pod_netns=pod_netns)
    return None if live is None else live.public_key


def latest_handshakes(*, name: str, pod_netns: str) -> dict[str, int]:
    """Peer public key -> epoch seconds of its latest handshake (0 = never).

    Raises ``WireGuardError`` if the interface does not exist in the pod.
    """
    live = wireguard_state(name=name, pod_netns=pod_netns)
    if live is None:
        raise WireGuardError(f"no interface {name} in {pod_netns}")
    return {key: peer.latest_handshake for key, peer in live.peers.items()}


# ------------------------------------------------------------------------- changing


def _validate(*, name, pod_netns, address, mtu, listen_port, private_key, peers) -> None:
    _check_name(name)
    if not isinstance(pod_netns, str) or not pod_netns:
        raise WireGuardError("pod_netns must be a namespace name or path")
    try:
        ipaddress.ip_interface(address)
    except (TypeError, ValueError):
        raise WireGuardError(f"bad interface address {address!r}") from None
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 576 <= mtu <= 65535:
        raise WireGuardError(f"mtu must be an integer 576..65535, got {mtu!r}")
    if listen_port is not None and (
        isinstance(listen_port, bool) or not isinstance(listen_port, int) or not 1 <= listen_port <= 65535
    ):
        raise WireGuardError(f"listen_port must be an integer 1..65535 or None, got {listen_port!r}")
    if not is_valid_key(private_key):
        raise WireGuardError("private_key is not a WireGuard key (base64 of 32 bytes)")
    keys = [p.public_key for p in peers]
    if any(not isinstance(p, Peer) for p in peers) or len(set(keys)) != len(keys):
        raise WireGuardError("peers must be distinct Peer objects (one per public key)")


def _one_at_a_time(change: Callable) -> Callable:
    """Two agents on one machine never change the same interface at once: a run that a killed
    daemon left behind goes on beside the next one, and each would take the other's half-made
    link for a leftover and delete it."""

    @functools.wraps(change)
    def locked(*, name: str, **kwargs):
        _check_name(name)
        os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
        with open(os.path.join(LOCK_DIR, f"{name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return change(name=name, **kwargs)

    return locked


@_one_at_a_time
def ensure_interface(
    *,
    name: str,
    node_netns: str | None,
    pod_netns: str,
    address: str,
    mtu: int,
    listen_port: int | None,
    private_key: str,
    peers: list[Peer],
    forward: bool,
    underlay_mtu: int | None = None,
    check_mode: bool = False,
    earlier: PodReading | None = None,
) -> dict:
    """Make interface ``name`` in the pod's namespace match the arguments; idempotent.

    Absent: created in ``node_netns`` (kernel WireGuard if available, else wireguard-go),
    given its MTU, moved into ``pod_netns``, then configured with ``wg setconf``, its
    ``address`` and brought up. Present: only what differs is changed (new and changed
    peers with ``wg addconf``, departed ones with ``wg set peer K remove``; unchanged
    peers and their sessions are not touched), the address, MTU, link state, and for
    ``forward=True`` the namespace's IP forwarding (a hub relays between its clients;
    ``forward=False`` leaves the sysctl alone, the pod may forward for its own reasons), and
    the MSS clamp of an IPv4 interface (``underlay_mtu``: the MTU of the node's link its
    packets leave by, when known).

    ``listen_port=None`` lets the interface pick a free port once and keeps it (clients
    need no fixed port: the server learns their endpoint from the handshake).

    After applying, the live public key must equal the one of ``private_key``.
    ``check_mode`` reports what would change and changes nothing. ``earlier``: the pod as
    read earlier in the caller's pass over its interfaces (what the others changed since
    leaves this one's link and clamp lines alone, so one reading serves them all); the pod is
    read again before anything is changed or made.

    Returns ``{'changed', 'created', 'peers_added', 'peers_removed', 'peers_updated',
    'public_key', 'latest_handshakes', 'peers'}`` (the last two as read before any change:
    peer key -> epoch seconds, and peer key -> ``probe.LivePeer`` with its handshake and
    bytes; empty for a new interface); the private key is never returned.
    """
    _validate(
        name=name,
        pod_netns=pod_netns,
        address=address,
        mtu=mtu,
        listen_port=listen_port,
        private_key=private_key,
        peers=peers,
    )
    secrets = (private_key,)
    public_key = public_key_of(private_key)
    interface = ipaddress.ip_interface(address)
    mss = probe.clamp_mss(mtu=mtu, underlay_mtu=underlay_mtu) if interface.version == 4 else None
    if not namespace_alive(pod_netns):
        raise WireGuardError(f"pod network namespace {pod_netns} does not exist")
    result = {
        "changed": False,
        "created": False,
        "peers_added": [],
        "peers_removed": [],
        "peers_updated": [],
        "public_key": public_key,
        "latest_handshakes": {},
        "peers": {},
    }

    live = read_interface(name=name, pod_netns=pod_netns, earlier=earlier)
    if live is None and earlier is not None:
        live = read_interface(name=name, pod_netns=pod_netns)  # made since that reading?
    if live is None:
        result.update(changed=True, created=True, peers_added=[p.public_key for p in peers])
        if check_mode:
            return result
        # Rendered first: an endpoint that does not resolve fails before anything is made.
        request = render_uapi_set(private_key=private_key, listen_port=listen_port, peers=peers, resolve=_resolve)
        wggo.clear_leftovers(name, node_netns, pod_netns)
        try:
            wggo.create_link(name, node_netns, pod_netns, mtu)
            if not wggo.set_configuration(name, request):
                _apply_config(name, pod_netns, "setconf", render_setconf(
                    private_key=private_key, listen_port=listen_port, peers=peers), secrets)
            raise_link(name, netns=pod_netns, address=address, forward=forward)
            clamps = probe.clamp_changes(_live_clamps(name, pod_netns), name=name, mss=mss)
            if clamps:
                # One process for every rule: a new link's two clamps were two iptables runs.
                run(probe.IPTABLES_RESTORE, netns=pod_netns, input=probe.mangle_restore(clamps))
        except Exception:
            # A half-made interface would make the next run think it exists; start clean.
            wggo.delete_everywhere(name, node_netns, pod_netns)
            raise
        if clamps:
            _remember_mangle(earlier)
    else:
        def diff(live: probe.LiveInterface) -> probe.Changes:
            return probe.diff_interface(live, name=name, address=address, mtu=mtu, listen_port=listen_port,
                                        public_key=public_key, peers=peers, forward=forward, resolve=_resolve,
                                        mss=mss)
        changes = diff(live)
        if changes.changed and earlier is not None:
            # The caller's earlier reading may only say that nothing is to be done: what is
            # changed follows the pod as it is now.
            live = read_interface(name=name, pod_netns=pod_netns) or live
            changes = diff(live)
        result.update(
            changed=changes.changed,
            peers_added=changes.peers_added,
            peers_removed=changes.peers_removed,
            peers_updated=changes.peers_updated,
            latest_handshakes={key: peer.latest_handshake for key, peer in live.peers.items()},
            peers=dict(live.peers),
        )
        if check_mode or not changes.changed:
            return result
        if changes.wireguard:
            _update_peers(
                name=name,
                pod_netns=pod_netns,
                changes=changes,
                peers=peers,
                private_key=private_key if changes.key else None,
                listen_port=listen_port if changes.listen_port else None,
                live=live,
            )
        for argv in changes.link_commands:
            run(argv, netns=pod_netns)
        if any(argv[:len(probe.IPTABLES)] == probe.IPTABLES for argv in changes.link_commands):
            _remember_mangle(earlier)

    live_key = interface_public_key(name=name, pod_netns=pod_netns)
    if live_key != public_key:
        raise WireGuardError(
            f"interface {name} in {pod_netns} reports public key {live_key} after apply, "
            f"but the configured private key's public key is {public_key}"
        )
    return result


def _remember_mangle(earlier: PodReading | None) -> None:
    """Read the pod's mangle table once more after changing it, so that the machine remembers
    it as this pass left it (``TableMemory``): the next pass, a converged one, then runs no
    ``iptables`` for the pod. (The first re-run after a deploy of 100 nodes read every table
    with a process: 0.35 to 0.55 s of it.)"""
    if earlier is not None and earlier.tables is not None:
        earlier.tables.rules(earlier.netns)


# The keepalive a peer taking over from another is added with when it should have none: a
# keepalive switched on sends one at once, which starts the new key's handshake now.
_KICK_KEEPALIVE = 25


def _update_peers(
    *,
    name: str,
    pod_netns: str,
    changes: probe.Changes,
    peers: list[Peer],
    private_key: str | None,
    listen_port: int | None,
    live: probe.LiveInterface,
) -> None:
    """Apply the peer diff in ``changes`` to a live interface, plus a new key or port.

    A peer that replaces another (its owner rotated its key, which it already uses: see
    docs/day2.md, "Key rotation") takes over the old one's learnt endpoint and
    starts its handshake at once, so the packets both ends held back while the keys did not
    match go out one round trip later instead of at WireGuard's next retry (5 s)."""
    touched = set(changes.peers_added) | set(changes.peers_updated)
    # addconf leaves unset fields alone, so switching a live keepalive off needs an
    # explicit 0; PrivateKey/ListenPort are given only when they really change.
    changed = []
    for peer in peers:
        if peer.public_key not in touched:
            continue
        old = live.peers.get(changes.replacing.get(peer.public_key, ""))
        given = peer if old is None else dataclasses.replace(
            peer, endpoint=peer.endpoint or old.endpoint,
            persistent_keepalive=peer.persistent_keepalive or _KICK_KEEPALIVE)
        changed.append(dataclasses.replace(given, persistent_keepalive=given.persistent_keepalive or 0))
    if changed or private_key is not None or listen_port is not None:
        config = render_setconf(private_key=private_key, listen_port=listen_port, peers=changed)
        secrets = (private_key,) if private_key else ()
        _apply_config(name, pod_netns, "addconf", config, secrets)
    # Removed after adding, so an address handed from a departed peer to a new one is
    # never without an owner.
    for key in changes.peers_removed:
        run(["wg", "set", name, "peer", key, "remove"], netns=pod_netns)
    wanted = {peer.public_key: peer for peer in peers}
    for key in changes.replacing:
        if not wanted[key].persistent_keepalive:
            run(["wg", "set", name, "peer", key, "persistent-keepalive", "off"], netns=pod_netns)


def restart_handshake(*, name: str, pod_netns: str, peer: Peer) -> None:
    """Configure ``peer`` afresh, so its first handshake is sent now.

    WireGuard retries a failed initiation only every 5 seconds; a client whose server did
    not know it yet at the first try would wait that long. Only for a peer that never
    completed a handshake, or whose session is past WireGuard's reject window: there is no
    session to disturb."""
    run(["wg", "set", name, "peer", peer.public_key, "remove"], netns=pod_netns)
    _apply_config(name, pod_netns, "addconf", render_setconf(private_key=None, listen_port=None, peers=[peer]), ())


@_one_at_a_time
def remove_interface(*, name: str, pod_netns: str) -> bool:
    """Delete interface ``name`` from the pod and whatever wireguard-go left; idempotent.

    Works when the pod's namespace is already gone (its links died with it; a lingering
    wireguard-go process or socket is still cleaned up). A wireguard-go process that still
    holds a live link of that name elsewhere is left alone. Returns True if anything was
    removed.
    """
    _check_name(name)
    removed = False
    if find_link(name, pod_netns) is not None:
        delete_link(name, pod_netns)
        removed = True
    if namespace_alive(pod_netns):
        # A rule naming a deleted interface stays in the pod's table: a later link of that name
        # would find a clamp it did not ask for.
        for argv in probe.clamp_commands(_live_clamps(name, pod_netns), name=name, mss=None):
            run(argv, netns=pod_netns, check=False)
    # wireguard-go exits by itself once its TUN link is gone; reap_orphans waits for
    # that and stops only the ones that did not.
    removed |= wggo.reap_orphans(name)
    removed |= wggo.remove_stale_socket(name)
    return removed
