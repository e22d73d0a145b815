"""The dtService data plane: WireGuard interfaces inside pod network namespaces.

This module owns every change made to a live interface, through ``ip``, ``wg`` and
``wireguard-go`` run as subprocesses (no extra Python dependency on the nodes):

- ``ensure_interface`` creates an interface in the *node's* network namespace, so its UDP
  socket is bound there (kernel WireGuard keeps the socket in the namespace the link was
  created in; ``wireguard-go`` keeps it in the namespace of its process), moves it into the
  pod's namespace and configures it (``wg setconf``); on later runs it changes only what
  differs, never by recreating the interface, so live tunnels are not disturbed: new or
  changed peers through ``wg addconf``, departed ones through ``wg set ... remove``;
- ``remove_interface`` deletes it and anything ``wireguard-go`` left behind;
- ``read_interface`` reads an interface's whole state in one probe; ``interface_exists``,
  ``interface_public_key`` and ``latest_handshakes`` read parts of it.

Network namespaces are given as a path (``/var/run/netns/x``, ``/proc/PID/ns/net``) or as
an ``ip netns`` name; ``None`` for the node means the namespace this process runs in.

Secrets: the private key only travels in a 0600 file in a private temporary directory
(removed right after ``wg`` reads it); it is never in a process's argv, a return value or
an exception message (``wg``'s stderr is scrubbed before it is quoted).

``wireguard-go`` specifics handled here: it refuses to start on a kernel it believes has
WireGuard unless ``WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1``; its control sockets
live in ``/var/run/wireguard`` for the whole machine, so ``wg`` finds an interface by
name from any namespace and names must be unique machine-wide; setting ``listen_port``
always closes and reopens its UDP socket, even to the same port, dropping what arrives
meanwhile. That is why live changes do not use ``wg syncconf``: wg-tools' setconf and
syncconf always send ListenPort (and reset an absent PrivateKey), so syncconf would
rebind the socket under every tunnel of the interface on each peer change.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence

from ansible_collections.sightline.dtservice.plugins.module_utils.rules.keys import is_valid_key, public_key_of
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.wgconfig import Peer, render_setconf

__all__ = [
    "Peer",
    "WireGuardError",
    "ensure_interface",
    "interface_exists",
    "interface_public_key",
    "latest_handshakes",
    "read_interface",
    "remove_interface",
]

WIREGUARD_GO_ENV = "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD"
SOCKET_DIR = "/var/run/wireguard"
NETNS_DIR = "/var/run/netns"
LOCK_DIR = "/run/dtservice/locks"
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_TIMEOUT = 60


class WireGuardError(RuntimeError):
    """A data-plane operation failed; the message is for a human and holds no secret."""


# --------------------------------------------------------------------------- plumbing


def _netns_path(netns: str) -> str:
    return netns if "/" in netns else os.path.join(NETNS_DIR, netns)


def _argv(netns: str | None, argv: list[str]) -> list[str]:
    # nsenter --net switches only the network namespace: the temp file and the wireguard-go
    # sockets stay visible, unlike `ip netns exec` which also remounts /sys and /etc.
    if netns is None:
        return argv
    return ["nsenter", f"--net={_netns_path(netns)}", "--", *argv]


def _run(
    argv: list[str],
    *,
    netns: str | None = None,
    check: bool = True,
    secrets: Sequence[str] = (),
    env: dict[str, str] | None = None,
    input: str | None = None,  # noqa: A002 - subprocess.run's name
) -> subprocess.CompletedProcess[str]:
    full = _argv(netns, argv)
    try:
        proc = subprocess.run(
            full,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
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


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _IFNAME.match(name):
        raise WireGuardError(f"bad interface name {name!r}: 1..15 characters of [A-Za-z0-9_.-]")


def _netns_alive(netns: str) -> bool:
    return os.path.exists(_netns_path(netns))


def _link(name: str, netns: str | None) -> dict | None:
    if netns is not None and not _netns_alive(netns):
        return None
    proc = _run(["ip", "-j", "link", "show", "dev", name], netns=netns, check=False)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout or "[]")
    return data[0] if data else None


@dataclasses.dataclass(frozen=True)
class LivePeer:
    allowed_ips: list[str]
    endpoint: str | None
    keepalive: int
    latest_handshake: int


@dataclasses.dataclass(frozen=True)
class LiveInterface:
    """What one probe of an interface in a pod found; holds no private key."""

    public_key: str | None
    listen_port: int
    mtu: int
    up: bool
    addresses: frozenset
    forwarding: dict[int, bool]
    peers: dict[str, LivePeer]


# One process in the pod's namespace reads the link, its addresses, the whole WireGuard state
# and the forwarding switches: a converged interface costs one probe, not a dozen commands.
# `wg` runs in the pod's namespace: kernel WireGuard is found by netlink there, wireguard-go
# by its machine-wide socket, so one call serves both.
_PROBE = (
    'ip -j addr show dev "$1" || exit 64\n'
    'echo "#"; wg show "$1" dump || exit 65\n'
    'echo "#"; echo "4 $(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null)"\n'
    'echo "6 $(cat /proc/sys/net/ipv6/conf/all/forwarding 2>/dev/null)"'
)
_NO_LINK = 64


def read_interface(*, name: str, pod_netns: str) -> LiveInterface | None:
    """The live state of interface ``name`` in the pod, or None if there is no such link."""
    _check_name(name)
    if not _netns_alive(pod_netns):
        return None
    proc = _run(["sh", "-c", _PROBE, "dtwg-probe", name], netns=pod_netns, check=False)
    if proc.returncode == _NO_LINK:
        return None
    if proc.returncode != 0:
        # Only stderr is quoted: stdout holds the private key of `wg show dump`.
        raise WireGuardError(f"reading interface {name} in {pod_netns} failed: {proc.stderr.strip()}")
    link_json, dump, switches = proc.stdout.split("#\n")
    return _parse_probe(link_json, dump, switches)


def _parse_probe(link_json: str, dump: str, switches: str) -> LiveInterface:
    link = (json.loads(link_json or "[]") or [{}])[0]
    addresses = frozenset(
        ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
        for info in link.get("addr_info", [])
        if info.get("scope") == "global"
    )
    rows = [line.split("\t") for line in dump.splitlines() if line.strip()]
    # The interface line is private-key, public-key, listen-port, fwmark; the private key
    # is dropped right here.
    _, public_key, listen_port, _ = rows[0]
    peers = {
        key: LivePeer(
            allowed_ips=[] if allowed == "(none)" else allowed.split(","),
            endpoint=None if endpoint == "(none)" else endpoint,
            keepalive=0 if keepalive == "off" else int(keepalive),
            latest_handshake=int(handshake),
        )
        for key, _psk, endpoint, allowed, handshake, _rx, _tx, keepalive in rows[1:]
    }
    forwarding = {}
    for line in switches.splitlines():
        version, _, value = line.partition(" ")
        if value.strip():
            forwarding[int(version)] = value.strip() == "1"
    return LiveInterface(
        public_key=public_key if is_valid_key(public_key) else None,
        listen_port=int(listen_port),
        mtu=link.get("mtu", 0),
        up="UP" in link.get("flags", []),
        addresses=addresses,
        forwarding=forwarding,
        peers=peers,
    )


def _with_key_file(text: str, use: Callable[[str], object]) -> None:
    # tmpfs when available so the key never lands on a persistent disk; mkdtemp is 0700.
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    tmpdir = tempfile.mkdtemp(prefix="dtwg-", dir=base)
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
        lambda path: _run(["wg", verb, name, path], netns=pod_netns, secrets=secrets),
    )


# ---------------------------------------------------------------- wireguard-go processes


def _wireguard_go_pids(name: str) -> list[int]:
    """PIDs of wireguard-go processes serving interface ``name`` (argv ``wireguard-go NAME``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                args = handle.read().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in args if a]
        if len(args) >= 2 and os.path.basename(args[0]) == "wireguard-go" and args[-1] == name:
            pids.append(int(entry))
    return pids


def _tun_attached(pid: int, name: str) -> bool:
    """True if process ``pid`` still holds a TUN file attached to a link called ``name``."""
    fd_dir = f"/proc/{pid}/fdinfo"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return False
    for fd in fds:
        try:
            with open(os.path.join(fd_dir, fd)) as handle:
                if f"iff:\t{name}\n" in handle.read():
                    return True
        except OSError:
            continue
    return False


def _alive(pid: int) -> bool:
    # A zombie counts as gone: it holds no socket or TUN, and reaping it is not ours to do.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    alive = [p for p in pids if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _alive(p)]
    return alive


def _reap_orphans(name: str) -> bool:
    """Stop wireguard-go processes for ``name`` whose link is gone; True if any went away.

    One still holding a link called ``name`` after the grace period serves a live link
    in some other namespace and is left alone.
    """
    pids = _wireguard_go_pids(name)
    if not pids:
        return False
    # They exit by themselves once their TUN link is gone, but a deleted namespace is
    # torn down asynchronously, so the link may still look attached for a moment.
    alive = _wait_gone(pids, 3.0)
    orphans = [p for p in alive if not _tun_attached(p, name)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in orphans:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        orphans = _wait_gone(orphans, 2.0)
    if orphans:
        raise WireGuardError(f"wireguard-go for {name} (pid {orphans}) does not stop")
    return len([p for p in alive if _alive(p)]) < len(pids)


def _remove_stale_socket(name: str) -> bool:
    path = os.path.join(SOCKET_DIR, f"{name}.sock")
    if not os.path.exists(path):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return False  # somebody still answers on it: not stale
    except OSError:
        os.unlink(path)
        return True
    finally:
        probe.close()


# ------------------------------------------------------------------------- reading


def interface_exists(*, name: str, pod_netns: str) -> bool:
    """True if a link called ``name`` exists in the pod's network namespace."""
    _check_name(name)
    return _link(name, pod_netns) is not None


def interface_public_key(*, name: str, pod_netns: str) -> str | None:
    """The live public key of interface ``name`` in the pod, or None if absent or keyless."""
    live = read_interface(name=name, pod_netns=pod_netns)
    return None if live is None else live.public_key


def latest_handshakes(*, name: str, pod_netns: str) -> dict[str, int]:
    """Peer public key -> epoch seconds of its latest handshake (0 = never).

    Raises ``WireGuardError`` if the interface does not exist in the pod.
    """
    live = read_interface(name=name, pod_netns=pod_netns)
    if live is None:
        raise WireGuardError(f"no interface {name} in {pod_netns}")
    return {key: peer.latest_handshake for key, peer in live.peers.items()}


def _networks(nets: Sequence[str]) -> set[str]:
    return {str(ipaddress.ip_network(n, strict=False)) for n in nets}


def _split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def _endpoint_matches(wanted: str, live: str | None) -> bool:
    if live is None:
        return False
    host, port = _split_endpoint(wanted)
    live_host, live_port = _split_endpoint(live)
    if port != live_port:
        return False
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(live_host)
    except ValueError:
        pass
    # A DNS name: wg stores what it resolved to, so compare against the resolution.
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return False
    return any(ipaddress.ip_address(info[4][0]) == ipaddress.ip_address(live_host) for info in infos)


def _peer_differs(peer: Peer, live: LivePeer) -> bool:
    if _networks(peer.allowed_ips) != _networks(live.allowed_ips):
        return True
    # No endpoint wanted means the peer roams to us: whatever wg learned is right.
    if peer.endpoint is not None and not _endpoint_matches(peer.endpoint, live.endpoint):
        return True
    return (peer.persistent_keepalive or 0) != live.keepalive


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


def _wait_for_control_socket(name: str, netns: str | None, log, seconds: float = 15) -> None:
    """wireguard-go answers on its control socket a moment after it returns; on a busy
    machine `wg` could come first, find no socket and fall back to the kernel's netlink
    ("Protocol not supported"). Its daemonised child can also fail after the parent
    returned 0: then its errors, in ``log``, say why."""
    deadline = time.monotonic() + seconds
    while _run(["wg", "show", name, "listen-port"], netns=netns, check=False).returncode != 0:
        if not _wireguard_go_pids(name):
            log.seek(0)
            errors = [line.strip() for line in log.read().decode(errors="replace").splitlines() if "ERROR" in line]
            hint = ""
            if any("too many open files" in line for line in errors):
                # Each wireguard-go holds one inotify instance on its control socket.
                hint = " (raise fs.inotify.max_user_instances: each wireguard-go interface takes one)"
            raise WireGuardError(f"wireguard-go for {name} exited: {'; '.join(errors) or 'no error logged'}{hint}")
        if time.monotonic() > deadline:
            raise WireGuardError(f"wireguard-go for {name} did not open its control socket within {seconds:.0f}s")
        time.sleep(0.05)


def _create_link(name: str, node_netns: str | None, pod_netns: str, mtu: int) -> str:
    """Create the link in the node namespace and move it into the pod's; returns 'kernel'
    or 'wireguard-go'."""
    if (
        _run(
            ["ip", "link", "add", "dev", name, "type", "wireguard"],
            netns=node_netns,
            check=False,
        ).returncode
        == 0
    ):
        kind = "kernel"
    else:
        env = {**os.environ, WIREGUARD_GO_ENV: "1", "LOG_LEVEL": "error"}
        # Its output goes to an unlinked file, not a pipe: the daemonised child keeps it
        # open, and waiting for a pipe's end would last as long as the interface.
        with tempfile.TemporaryFile() as log:
            try:
                # A session of its own: an agent run over SSH (with a terminal) ends with a
                # SIGHUP to its session, which would take every interface it made with it.
                proc = subprocess.run(_argv(node_netns, ["wireguard-go", name]), stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=log, env=env, timeout=_TIMEOUT, check=False,
                                      start_new_session=True)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise WireGuardError(f"wireguard-go {name}: {exc}") from None
            if proc.returncode != 0:
                log.seek(0)
                raise WireGuardError(f"wireguard-go {name} failed (exit {proc.returncode}): "
                                     f"{log.read().decode(errors='replace').strip()[-500:]}")
            _wait_for_control_socket(name, node_netns, log)
        kind = "wireguard-go"
    # The MTU is set while still in the node namespace: wireguard-go learns it from netlink
    # there, and would not see a change made after the move.
    _run(["ip", "-batch", "-"], netns=node_netns,
         input=f"link set dev {name} mtu {mtu}\nlink set dev {name} netns {_netns_path(pod_netns)}\n")
    return kind


# A new link in the pod: its configuration, address, up, and a hub's forwarding, in one
# process. $2 is the private 0600 file holding the key.
_SET_UP = (
    'wg setconf "$1" "$2" && ip addr add "$3" dev "$1" && ip link set dev "$1" up'
    ' && { [ -z "$4" ] || sysctl -q -w "$4=1"; }'
)


def _forwarding_sysctl(address: str) -> str:
    return "net.ipv4.ip_forward" if ipaddress.ip_interface(address).version == 4 else "net.ipv6.conf.all.forwarding"


def _link_commands(live: LiveInterface, *, name: str, address: str, mtu: int, forward: bool) -> list[list[str]]:
    """The commands that give the link its address, MTU, up state and forwarding."""
    wanted = ipaddress.ip_interface(address)
    commands = []
    if wanted not in live.addresses:
        commands.append(["ip", "addr", "add", str(wanted), "dev", name])
    # Addresses we did not ask for go: a reallocated address must not linger.
    commands += [["ip", "addr", "del", str(a), "dev", name] for a in sorted(live.addresses - {wanted}, key=str)]
    if live.mtu != mtu:
        commands.append(["ip", "link", "set", "dev", name, "mtu", str(mtu)])
    if not live.up:
        commands.append(["ip", "link", "set", "dev", name, "up"])
    if forward and not live.forwarding.get(wanted.version, False):
        commands.append(["sysctl", "-q", "-w", f"{_forwarding_sysctl(address)}=1"])
    return commands


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
    check_mode: bool = False,
) -> dict:
    """Make interface ``name`` in the pod's namespace match the arguments; idempotent.

    Absent: created in ``node_netns`` (kernel WireGuard if available, else wireguard-go),
    given its MTU, moved into ``pod_netns``, then configured with ``wg setconf``, its
    ``address`` and brought up. Present: only what differs is changed (new and changed
    peers with ``wg addconf``, departed ones with ``wg set peer K remove``; unchanged
    peers and their sessions are not touched), the address, MTU, link state, and for
    ``forward=True`` the namespace's IP forwarding (a hub relays between its clients;
    ``forward=False`` leaves the sysctl alone, the pod may forward for its own reasons).

    ``listen_port=None`` lets the interface pick a free port once and keeps it (clients
    need no fixed port: the server learns their endpoint from the handshake).

    After applying, the live public key must equal the one of ``private_key``.
    ``check_mode`` reports what would change and changes nothing.

    Returns ``{'changed', 'created', 'peers_added', 'peers_removed', 'peers_updated',
    'public_key', 'latest_handshakes'}`` (the last as read before any change: peer key ->
    epoch seconds, empty for a new interface); the private key is never returned.
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
    if not _netns_alive(pod_netns):
        raise WireGuardError(f"pod network namespace {pod_netns} does not exist")
    result = {
        "changed": False,
        "created": False,
        "peers_added": [],
        "peers_removed": [],
        "peers_updated": [],
        "public_key": public_key,
        "latest_handshakes": {},
    }

    live = read_interface(name=name, pod_netns=pod_netns)
    if live is None:
        result.update(changed=True, created=True, peers_added=[p.public_key for p in peers])
        if check_mode:
            return result
        _clear_leftovers(name, node_netns, pod_netns)
        try:
            _create_link(name, node_netns, pod_netns, mtu)
            config = render_setconf(private_key=private_key, listen_port=listen_port, peers=peers)
            sysctl = _forwarding_sysctl(address) if forward else ""
            _with_key_file(config, lambda path: _run(
                ["sh", "-c", _SET_UP, "dtwg-setup", name, path, address, sysctl], netns=pod_netns, secrets=secrets))
        except Exception:
            # A half-made interface would make the next run think it exists; start clean.
            _delete_everywhere(name, node_netns, pod_netns)
            raise
    else:
        result["latest_handshakes"] = {key: peer.latest_handshake for key, peer in live.peers.items()}
        wanted = {p.public_key: p for p in peers}
        result["peers_added"] = [k for k in wanted if k not in live.peers]
        result["peers_removed"] = sorted(k for k in live.peers if k not in wanted)
        result["peers_updated"] = [k for k, p in wanted.items() if k in live.peers and _peer_differs(p, live.peers[k])]
        key_differs = live.public_key != public_key
        port_differs = listen_port is not None and live.listen_port != listen_port
        wg_changed = bool(
            key_differs or port_differs or result["peers_added"] or result["peers_removed"] or result["peers_updated"]
        )
        link_commands = _link_commands(live, name=name, address=address, mtu=mtu, forward=forward)
        result["changed"] = wg_changed or bool(link_commands)
        if check_mode or not result["changed"]:
            return result
        if wg_changed:
            _update_peers(
                name=name,
                pod_netns=pod_netns,
                result=result,
                peers=peers,
                private_key=private_key if key_differs else None,
                listen_port=listen_port if port_differs else None,
            )
        for argv in link_commands:
            _run(argv, netns=pod_netns)

    live_key = interface_public_key(name=name, pod_netns=pod_netns)
    if live_key != public_key:
        raise WireGuardError(
            f"interface {name} in {pod_netns} reports public key {live_key} after apply, "
            f"but the configured private key's public key is {public_key}"
        )
    return result


def _update_peers(
    *,
    name: str,
    pod_netns: str,
    result: dict,
    peers: list[Peer],
    private_key: str | None,
    listen_port: int | None,
) -> None:
    """Apply the peer diff in ``result`` to a live interface, plus a new key or port."""
    touched = set(result["peers_added"]) | set(result["peers_updated"])
    # addconf leaves unset fields alone, so switching a live keepalive off needs an
    # explicit 0; PrivateKey/ListenPort are given only when they really change.
    changed = [
        dataclasses.replace(p, persistent_keepalive=p.persistent_keepalive or 0)
        for p in peers
        if p.public_key in touched
    ]
    if changed or private_key is not None or listen_port is not None:
        config = render_setconf(private_key=private_key, listen_port=listen_port, peers=changed)
        secrets = (private_key,) if private_key else ()
        _apply_config(name, pod_netns, "addconf", config, secrets)
    # Removed after adding, so an address handed from a departed peer to a new one is
    # never without an owner.
    for key in result["peers_removed"]:
        _run(["wg", "set", name, "peer", key, "remove"], netns=pod_netns)


def restart_handshake(*, name: str, pod_netns: str, peer: Peer) -> None:
    """Configure ``peer`` afresh, so its first handshake is sent now.

    WireGuard retries a failed initiation only every 5 seconds; a client whose server did
    not know it yet at the first try would wait that long. Only for a peer that never
    completed a handshake: there is no session to disturb."""
    _run(["wg", "set", name, "peer", peer.public_key, "remove"], netns=pod_netns)
    _apply_config(name, pod_netns, "addconf", render_setconf(private_key=None, listen_port=None, peers=[peer]), ())


def _clear_leftovers(name: str, node_netns: str | None, pod_netns: str) -> None:
    """Before creating: remove traces of an earlier half-finished or orphaned interface."""
    node_path = None if node_netns is None else _netns_path(node_netns)
    # Created but never moved (a run died in between): it carries nothing yet.
    if _netns_path(pod_netns) != node_path and _link(name, node_netns) is not None:
        _run(["ip", "link", "del", "dev", name], netns=node_netns)
    _reap_orphans(name)
    if any(_tun_attached(pid, name) for pid in _wireguard_go_pids(name)):
        raise WireGuardError(
            f"interface name {name} is in use by a wireguard-go process for a link outside "
            f"{pod_netns}; wireguard-go names must be unique machine-wide"
        )
    _remove_stale_socket(name)


def _delete_everywhere(name: str, node_netns: str | None, pod_netns: str) -> None:
    for netns in (pod_netns, node_netns):
        if _link(name, netns) is not None:
            _run(["ip", "link", "del", "dev", name], netns=netns, check=False)
    _reap_orphans(name)
    _remove_stale_socket(name)


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
    if _link(name, pod_netns) is not None:
        _run(["ip", "link", "del", "dev", name], netns=pod_netns)
        removed = True
    # wireguard-go exits by itself once its TUN link is gone; _reap_orphans waits for
    # that and stops only the ones that did not.
    removed |= _reap_orphans(name)
    removed |= _remove_stale_socket(name)
    return removed
