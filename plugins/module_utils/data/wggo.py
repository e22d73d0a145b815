"""The life of a WireGuard link itself: kernel WireGuard, else a ``wireguard-go`` process.

Owns creating the link in the *node's* network namespace, so its UDP socket is bound
there (kernel WireGuard keeps the socket in the namespace the link was created in;
``wireguard-go`` keeps it in the namespace of its process), and moving it into the pod's;
waiting for wireguard-go's control socket, reading an interface's configuration from it
(``configuration``) and giving a new one its configuration (``set_configuration``); finding
the wireguard-go processes of an interface name, stopping the orphaned ones and removing
their stale sockets; clearing what a half-finished run left before a new link is made, and
deleting a link wherever it may be. Also tells which UDP ports of a node's namespace are
held by something else than the project's links, so that a hub is never given (or kept on)
a port it cannot listen on.

``wireguard-go`` specifics: it refuses to start on a kernel it believes has WireGuard
unless ``WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1``; its control sockets live in
``/var/run/wireguard`` for the whole machine, so ``wg`` finds an interface by name from
any namespace and names must be unique machine-wide.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.data.netns import (
    TIMEOUT,
    WireGuardError,
    argv_in,
    delete_link,
    find_link,
    move_link,
    namespace_path,
    run,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import sockets

__all__ = [
    "SOCKET_DIR",
    "WIREGUARD_GO_ENV",
    "clear_leftovers",
    "configuration",
    "control_socket_exists",
    "create_link",
    "delete_everywhere",
    "foreign_udp_ports",
    "reap_orphans",
    "remove_stale_socket",
    "wireguard_go_pids",
]

WIREGUARD_GO_ENV = "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD"
SOCKET_DIR = "/var/run/wireguard"
# Set once ``ip link add ... type wireguard`` has answered that the kernel knows no such
# link type: it answers so for every later link of the process, and asking again cost two
# processes for each new link (200 in a first deploy of 100 nodes).
_NO_KERNEL_WIREGUARD = threading.Event()


# ---------------------------------------------------------------- wireguard-go processes


def _wireguard_go_processes() -> dict[int, str]:
    """Every wireguard-go process (argv ``wireguard-go ... NAME``): pid -> interface name."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                raw = handle.read().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in raw if a]
        if len(args) >= 2 and os.path.basename(args[0]) == "wireguard-go":
            found[int(entry)] = args[-1]
    return found


def wireguard_go_pids(name: str) -> list[int]:
    """PIDs of wireguard-go processes serving interface ``name`` (argv ``wireguard-go NAME``)."""
    return [pid for pid, interface in _wireguard_go_processes().items() if interface == name]


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def foreign_udp_ports(netns: str | None) -> set[int]:
    """The UDP ports bound in ``netns`` by anything but the project's own links: a socket of a
    wireguard-go serving a ``dt...`` interface is ours, and so is a kernel socket (inode 0,
    kernel WireGuard); every other socket is foreign, whatever address it is bound to."""
    tables = run(["cat", "/proc/net/udp", "/proc/net/udp6"], netns=netns, check=False).stdout
    ours = {inode for pid, interface in _wireguard_go_processes().items()
            if contract.INTERFACE_PATTERN.match(interface) for inode in _socket_inodes(pid)}
    return {port for port, inodes in sockets.udp_sockets([tables]).items() if inodes - ours - {0}}


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


def reap_orphans(name: str) -> bool:
    """Stop wireguard-go processes for ``name`` whose link is gone; True if any went away.

    One still holding a link called ``name`` after the grace period serves a live link
    in some other namespace and is left alone.
    """
    pids = wireguard_go_pids(name)
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


def _socket_path(name: str) -> str:
    return os.path.join(SOCKET_DIR, f"{name}.sock")


def control_socket_exists(name: str) -> bool:
    """True if a wireguard-go control socket for ``name`` is on this machine (one look at the
    directory: no connection, no namespace entered)."""
    return os.path.exists(_socket_path(name))


def remove_stale_socket(name: str) -> bool:
    """Remove the control socket of ``name`` if nobody answers on it; True if removed."""
    path = _socket_path(name)
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


def _exchange(name: str, request: bytes, *, doing: str) -> str | None:
    """wireguard-go's answer (up to its empty line) to one UAPI ``request`` on the control
    socket of ``name``, in this process; None if nothing answers there (kernel WireGuard, or
    no such interface). Requests and answers may hold the private key: never quote them."""
    answer = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
            control.settimeout(TIMEOUT)
            control.connect(_socket_path(name))
            control.sendall(request)
            # The connection stays open for more operations: an answer ends with an empty line.
            while not answer.endswith(b"\n\n"):
                chunk = control.recv(1 << 16)
                if not chunk:
                    break
                answer += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except OSError as error:
        raise WireGuardError(f"{doing} {name} on wireguard-go's control socket: {error.strerror or error}") from None
    if not answer.endswith(b"\n\n"):
        raise WireGuardError(f"wireguard-go's control socket of {name} closed before its answer ended")
    return answer.decode("ascii", errors="replace")


def configuration(name: str) -> str | None:
    """What wireguard-go serving ``name`` answers a UAPI ``get``, read from its control
    socket in this process (no ``wg`` run); None if nothing answers there (kernel WireGuard,
    or no such interface). The answer holds the private key: parse it, never quote it."""
    return _exchange(name, b"get=1\n\n", doing="reading")


def set_configuration(name: str, request: str) -> bool:
    """Send a UAPI ``set`` request (``wgconfig.render_uapi_set``) to wireguard-go serving
    ``name``: what ``wg setconf`` would send, without a key file and two processes. False
    if nothing answers there (kernel WireGuard: ``wg`` configures it)."""
    answer = _exchange(name, request.encode("ascii"), doing="configuring")
    if answer is None:
        return False
    if answer != "errno=0\n\n":
        raise WireGuardError(f"wireguard-go refused the configuration of {name}: {answer.strip()}")
    return True


# ------------------------------------------------------------------------- the link


def _wait_for_control_socket(name: str, process: subprocess.Popen, log, seconds: float = 15) -> None:
    """wireguard-go answers on its control socket a few milliseconds after it starts, and the
    interface cannot be configured before. If it exits first, its errors, in ``log``, say why."""
    deadline = time.monotonic() + seconds
    while configuration(name) is None:
        if process.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")
            errors = [line.strip() for line in output.splitlines() if "ERROR" in line] or [output.strip()[-500:]]
            hint = ""
            if any("too many open files" in line for line in errors):
                # Each wireguard-go holds one inotify instance on its control socket.
                hint = " (raise fs.inotify.max_user_instances: each wireguard-go interface takes one)"
            raise WireGuardError(f"wireguard-go for {name} exited ({process.returncode}): "
                                 f"{'; '.join(filter(None, errors)) or 'nothing logged'}{hint}")
        if time.monotonic() > deadline:
            raise WireGuardError(f"wireguard-go for {name} did not open its control socket within {seconds:.0f}s")
        time.sleep(0.005)


# The wireguard-go processes this one started that may still run. Nobody else waits for
# them: each start reaps those that exited since (a long-lived caller would gather zombies),
# and those left when this process ends go to init.
_started: list[subprocess.Popen] = []
_started_lock = threading.Lock()


def _start_wireguard_go(name: str, node_netns: str | None) -> None:
    # Without the daemon's run mark: the interface outlives the run, also one killed for overstaying.
    env = {**{k: v for k, v in os.environ.items() if k != contract.RUN_MARK}, WIREGUARD_GO_ENV: "1",
           "LOG_LEVEL": "error"}
    # Its output goes to an unlinked file, not a pipe: the process keeps it open, and
    # waiting for a pipe's end would last as long as the interface.
    with tempfile.TemporaryFile() as log:
        try:
            # In the foreground: wireguard-go left to daemonise itself starts a second Go
            # process (100 more in a first deploy of 100 nodes). In a session of its own: an
            # agent run over SSH (with a terminal) ends with a SIGHUP to its session, which
            # would take every interface it made with it.
            process = subprocess.Popen(argv_in(node_netns, ["wireguard-go", "--foreground", name]),
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                       start_new_session=True)
        except OSError as exc:
            raise WireGuardError(f"wireguard-go {name}: {exc}") from None
        with _started_lock:
            _started[:] = [earlier for earlier in _started if earlier.poll() is None]
            _started.append(process)
        _wait_for_control_socket(name, process, log)


def create_link(name: str, node_netns: str | None, pod_netns: str, mtu: int) -> None:
    """Create the link in the node namespace (kernel WireGuard if the kernel can, else
    wireguard-go), give it its MTU and move it into the pod's."""
    if _NO_KERNEL_WIREGUARD.is_set():
        _start_wireguard_go(name, node_netns)
    else:
        added = run(["ip", "link", "add", "dev", name, "type", "wireguard"], netns=node_netns, check=False)
        if added.returncode != 0:
            if "Unknown device type" in added.stderr:
                _NO_KERNEL_WIREGUARD.set()
            _start_wireguard_go(name, node_netns)
    # The MTU is set while still in the node namespace: wireguard-go learns it from netlink
    # there, and would not see a change made after the move.
    move_link(name, mtu=mtu, from_netns=node_netns, to_netns=pod_netns)


def clear_leftovers(name: str, node_netns: str | None, pod_netns: str) -> None:
    """Before creating: remove traces of an earlier half-finished or orphaned interface."""
    node_path = None if node_netns is None else namespace_path(node_netns)
    # Created but never moved (a run died in between): it carries nothing yet.
    if namespace_path(pod_netns) != node_path and find_link(name, node_netns) is not None:
        delete_link(name, node_netns)
    # wireguard-go makes its link and then its control socket as it starts, and a
    # killed one leaves the socket behind: with no socket there, no wireguard-go serves this
    # name, and the machine's processes need not be read. (Reading every process's command
    # line for each new link made a deploy of 100 links on one machine quadratic.)
    if not os.path.exists(_socket_path(name)):
        return
    reap_orphans(name)
    if any(_tun_attached(pid, name) for pid in wireguard_go_pids(name)):
        raise WireGuardError(
            f"interface name {name} is in use by a wireguard-go process for a link outside "
            f"{pod_netns}; wireguard-go names must be unique machine-wide"
        )
    remove_stale_socket(name)


def delete_everywhere(name: str, node_netns: str | None, pod_netns: str) -> None:
    """Delete link ``name`` from both namespaces, and what wireguard-go left; best effort."""
    for netns in (pod_netns, node_netns):
        if find_link(name, netns) is not None:
            with contextlib.suppress(WireGuardError):
                delete_link(name, netns)
    reap_orphans(name)
    remove_stale_socket(name)
