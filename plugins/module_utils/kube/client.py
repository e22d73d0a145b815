"""A small Kubernetes REST client: a kubeconfig context becomes JSON requests over TLS.

Owns how the provisioner speaks HTTP to an API server: reading the kubeconfig (or the pod's
service account), the TLS context, the credentials, turning answers that are not 2xx into
``ApiError``, and streaming a WATCH (``ApiClient.watch``) for the reconciler daemon. Every
module run starts a fresh Python, and importing the kubernetes client costs about a second
of it; this needs only urllib3 and PyYAML, which Ansible itself brings. The daemon uses it
too, so the product has one Kubernetes client (README, "Decisions").

Credentials understood: client certificates (files or ``-data``), bearer tokens (inline or
``tokenFile``), basic auth, and exec plugins (``client.authentication.k8s.io`` ExecCredential,
as cloud providers hand out). The retired ``auth-provider`` stanza is refused with a message.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

try:
    import urllib3
    import yaml
except ImportError as error:
    # A module reports it by name before any work (module_args.require); anything else that
    # reaches the API gets it raised by ApiClient.
    IMPORT_ERROR: ImportError | None = error
else:
    IMPORT_ERROR = None

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Seconds: connecting, and waiting for an answer.
TIMEOUT = {"connect": 10, "read": 60}
# A WATCH asks the server to end the stream after this long (the client then resumes from the
# last resourceVersion); a stream silent for longer than that plus a margin has lost its server.
WATCH_SECONDS = 300
WATCH_SILENCE_MARGIN = 30
# When set (by the reconciler daemon, for the processes of one run), the file every write
# appends the version it made to: one JSON line [uid, resourceVersion]. The daemon tells the
# watch events of its own runs' writes (echoes) from those of anybody else by it.
WRITES_FILE = "DTSERVICE_WRITES_FILE"
# 429 means "not now" (API priority and fairness, or a new CRD's storage still starting):
# wait what the server asks, this many times, before giving up.
BUSY_RETRIES = 30


class ApiError(Exception):
    """An API server refused a request (``status`` is the HTTP code) or could not be reached
    (``status`` 0); ``message`` is the server's own explanation when it gave one."""

    def __init__(self, *, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message


class KubeconfigError(ValueError):
    """The kubeconfig cannot be used: missing, malformed, or naming what it does not hold."""


@dataclass
class Endpoint:
    """Where one kubeconfig context points, and how to authenticate there.

    ``tls`` makes a new SSL context (None: plain HTTP) rather than holding one: urllib3
    rewrites the context it is given on every connection it opens (ALPN, ``verify_mode``),
    which is not safe while another thread opens a connection from the same context, so each
    thread's pool gets a context of its own (``ApiClient``)."""

    server: str
    tls: Callable[[], ssl.SSLContext] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    server_name: str | None = None
    # The context made to check the kubeconfig, given to the first connection rather than
    # made again (2 ms of each process that opens one).
    unused: list[ssl.SSLContext] = field(default_factory=list, repr=False)

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """A new SSL context for this endpoint, for one thread's use."""
        if self.tls is None:
            return None
        try:
            return self.unused.pop()  # atomic: no two threads get the same one
        except IndexError:
            return self.tls()


def load_endpoint(*, kubeconfig: str | None = None, context: str | None = None) -> Endpoint:
    """The endpoint of ``context`` (default: the current one) in ``kubeconfig``; without a
    path, ``$KUBECONFIG`` (first file), ``~/.kube/config``, then the pod's service account."""
    named = kubeconfig or (os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None)
    if named is None and not Path("~/.kube/config").expanduser().exists() \
            and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return _in_cluster()
    path = Path(named or "~/.kube/config").expanduser()
    try:
        # LibYAML's safe loader where PyYAML has it: a tenth of the pure-Python one's time.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        document = yaml.load(path.read_text(), Loader=loader) or {}  # noqa: S506 - a safe loader
    except OSError as error:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise KubeconfigError(f"kubeconfig {path} is not valid YAML: {error}") from None
    base = path.parent
    name = context or document.get("current-context")
    if not name:
        raise KubeconfigError(f"kubeconfig {path} has no current-context; name a context")
    ctx = _named(document, "contexts", name, path)["context"]
    cluster = _named(document, "clusters", ctx.get("cluster"), path)["cluster"]
    user = _named(document, "users", ctx.get("user"), path)["user"] if ctx.get("user") else {}
    endpoint = Endpoint(server=cluster["server"].rstrip("/"), server_name=cluster.get("tls-server-name"))
    certificate = _authenticate(endpoint, user, base)
    if cluster.get("server", "").startswith("https"):
        endpoint.tls = _tls_factory(cluster, base, certificate)
        # A kubeconfig whose CA or certificate cannot be loaded fails here, not in a thread.
        endpoint.unused.append(endpoint.tls())
    return endpoint


def _named(document: Mapping[str, Any], section: str, name: str | None, path: Path) -> dict:
    for item in document.get(section) or []:
        if item.get("name") == name:
            return item
    raise KubeconfigError(f"kubeconfig {path} has no {section[:-1]} named {name!r}")


def _file(value: str, base: Path) -> str:
    return str((base / Path(value).expanduser()).resolve())


def _tls_factory(cluster: Mapping[str, Any], base: Path,
                 certificate: Mapping[str, Any] | None) -> Callable[[], ssl.SSLContext]:
    """What makes the endpoint's SSL contexts: the cluster's CA (or none, when the kubeconfig
    says not to verify) and the user's client certificate, read once."""
    ca_data = base64.b64decode(cluster["certificate-authority-data"]).decode() \
        if cluster.get("certificate-authority-data") else None
    ca_file = _file(cluster["certificate-authority"], base) \
        if cluster.get("certificate-authority") and not ca_data else None
    insecure = bool(cluster.get("insecure-skip-tls-verify"))

    def make() -> ssl.SSLContext:
        # Verifying against the cluster's own CA alone: loading the system's CA store as well
        # would cost tens of milliseconds per connection and trust more than the kubeconfig says.
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if insecure:
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        elif ca_data or ca_file:
            tls.load_verify_locations(cafile=ca_file, cadata=ca_data)
        else:
            tls.load_default_certs()
        if certificate:
            _load_client_certificate(tls, certificate, base)
        return tls

    return make


def _authenticate(endpoint: Endpoint, user: Mapping[str, Any], base: Path) -> Mapping[str, Any] | None:
    """Set the endpoint's headers; returns the user's client certificate stanza, if any."""
    if user.get("auth-provider"):
        raise KubeconfigError("the kubeconfig user uses an auth-provider, which Kubernetes retired; "
                              "use its exec credential plugin instead")
    if user.get("exec"):
        user = {**user, **_exec_credential(user["exec"], base)}
    certificate = None
    if user.get("client-certificate-data") or user.get("client-certificate"):
        certificate = {key: user[key] for key in ("client-certificate-data", "client-key-data",
                                                  "client-certificate", "client-key") if key in user}
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(_file(user["tokenFile"], base)).read_text().strip()
    if token:
        endpoint.headers["Authorization"] = f"Bearer {token}"
    elif user.get("username"):
        pair = f"{user['username']}:{user.get('password', '')}".encode()
        endpoint.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    return certificate


def _load_client_certificate(tls: ssl.SSLContext, user: Mapping[str, Any], base: Path) -> None:
    if user.get("client-certificate-data"):
        # ssl loads a certificate only from a file: a private directory, gone once loaded.
        with tempfile.TemporaryDirectory(prefix="dtservice-tls-") as scratch:
            cert, key = Path(scratch, "cert.pem"), Path(scratch, "key.pem")
            for target, data in ((cert, user["client-certificate-data"]), (key, user["client-key-data"])):
                target.touch(mode=0o600)
                target.write_bytes(base64.b64decode(data))
            tls.load_cert_chain(str(cert), str(key))
    else:
        tls.load_cert_chain(_file(user["client-certificate"], base), _file(user["client-key"], base))


def _exec_credential(spec: Mapping[str, Any], base: Path) -> dict[str, str]:
    """Run the kubeconfig's credential plugin; its ExecCredential status gives a token or a
    client certificate (the ``-data`` fields, already PEM)."""
    command = spec["command"]
    if "/" in command and not Path(command).is_absolute():
        command = _file(command, base)
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []},
           "KUBERNETES_EXEC_INFO": json.dumps({"apiVersion": spec.get("apiVersion"), "kind": "ExecCredential",
                                               "spec": {"interactive": False}})}
    try:
        done = subprocess.run([command, *(spec.get("args") or [])], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
    except OSError as error:
        raise KubeconfigError(f"the kubeconfig's credential plugin {command} did not start: {error}") from None
    if done.returncode != 0:
        raise KubeconfigError(f"the kubeconfig's credential plugin {command} failed "
                              f"(exit {done.returncode}): {done.stderr.strip()[:300]}")
    try:
        status = json.loads(done.stdout)["status"]
    except (ValueError, KeyError, TypeError):
        raise KubeconfigError(f"the kubeconfig's credential plugin {command} did not print an "
                              "ExecCredential with a status") from None
    credential = {}
    if status.get("token"):
        credential["token"] = status["token"]
    if status.get("clientCertificateData"):
        credential["client-certificate-data"] = base64.b64encode(status["clientCertificateData"].encode()).decode()
        credential["client-key-data"] = base64.b64encode(status["clientKeyData"].encode()).decode()
    return credential


def _in_cluster() -> Endpoint:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    ca_file = str(SERVICE_ACCOUNT_DIR / "ca.crt")
    token = (SERVICE_ACCOUNT_DIR / "token").read_text().strip()
    host = f"[{host}]" if ":" in host else host
    return Endpoint(server=f"https://{host}:{port}", tls=lambda: ssl.create_default_context(cafile=ca_file),
                    headers={"Authorization": f"Bearer {token}"})


# Every client of this process: a forked child (a pass's second process) must not share a
# TLS connection with its parent, whose next request would then be out of step with the server.
_CLIENTS: weakref.WeakSet[ApiClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        client._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


class ApiClient:
    """JSON requests to one API server; thread-safe. Its connections are kept in lanes, each a
    urllib3 pool of keep-alive connections with an SSL context of its own (``Endpoint``); a
    request takes an idle lane, or makes one, and gives it back when its answer is read. So
    no connection, SSL object or context is ever used by two threads at once, and a
    connection outlives the thread that opened it: the phases of a pass, each with threads
    of its own, go on over the connections of the phase before instead of new TLS handshakes
    (about 3 ms of this process's time each, and the API server's)."""

    def __init__(self, endpoint: Endpoint) -> None:
        if IMPORT_ERROR is not None:
            raise IMPORT_ERROR
        self.endpoint = endpoint
        self._https = urlsplit(endpoint.server).scheme == "https"
        self._idle: list[urllib3.PoolManager] = []
        self._idle_guard = threading.Lock()
        self._parents: list[urllib3.PoolManager] = []
        _CLIENTS.add(self)

    def _forked(self) -> None:
        """In a forked child: the lanes inherited are the parent's, whose connections go on
        there. Kept as they are, neither used nor closed here; this process makes its own."""
        self._parents.extend(self._idle)
        self._idle, self._idle_guard = [], threading.Lock()

    def _new_lane(self) -> urllib3.PoolManager:
        options: dict[str, Any] = {"maxsize": 1, "timeout": urllib3.Timeout(**TIMEOUT), "retries": False}
        if self._https:
            options.update(ssl_context=self.endpoint.ssl_context, server_hostname=self.endpoint.server_name)
        return urllib3.PoolManager(**options)

    @contextmanager
    def _lane(self) -> Iterator[urllib3.PoolManager]:
        """An idle lane for one request, this thread's alone until the block ends."""
        with self._idle_guard:
            lane = self._idle.pop() if self._idle else None
        if lane is None:
            lane = self._new_lane()
        try:
            yield lane
        finally:
            with self._idle_guard:
                self._idle.append(lane)

    def request(self, method: str, path: str, *, body: Any = None, query: Mapping[str, str] | None = None,
                content_type: str = "application/json") -> dict:
        url = self.endpoint.server + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json", **self.endpoint.headers}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        for _attempt in range(BUSY_RETRIES):
            try:
                with self._lane() as lane:  # the whole answer is read before the lane is given back
                    response = lane.request(method, url, body=data, headers=headers)
            except urllib3.exceptions.HTTPError as error:
                raise ApiError(status=0, reason="unreachable", message=f"{self.endpoint.server}: {error}") from None
            if response.status != 429:
                break
            time.sleep(min(float(response.headers.get("Retry-After") or 1), 5))
        if response.status >= 300:
            raise _refusal(response)
        answer = json.loads(response.data) if response.data else {}
        if method != "GET" and os.environ.get(WRITES_FILE):
            _record_write(os.environ[WRITES_FILE], answer)
        return answer

    def watch(self, path: str, *, resource_version: str, timeout_seconds: int = WATCH_SECONDS,
              query: Mapping[str, str] | None = None) -> WatchStream:
        """Start a WATCH of the collection at ``path`` from ``resource_version`` (a LIST's).

        Returns the stream to iterate; a refusal (403, 404, 5xx) or an unreachable server
        raises ``ApiError`` here, like ``request``."""
        url = self.endpoint.server + path + "?" + urlencode({
            **(query or {}), "watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds)})
        headers = {"Accept": "application/json", **self.endpoint.headers}
        try:
            # A lane of its own, dropped with the stream (WatchStream.close): the server may
            # still be writing to its connection.
            lane = self._new_lane()
            response = lane.request("GET", url, headers=headers, preload_content=False,
                                    timeout=urllib3.Timeout(connect=TIMEOUT["connect"],
                                                            read=timeout_seconds + WATCH_SILENCE_MARGIN))
        except urllib3.exceptions.HTTPError as error:
            raise ApiError(status=0, reason="unreachable", message=f"{self.endpoint.server}: {error}") from None
        if response.status >= 300:
            refusal = _refusal(response)  # reads the (short) body the server explained itself in
            response.release_conn()
            raise refusal
        return WatchStream(response, resource_version=resource_version, server=self.endpoint.server)


def _record_write(path: str, answer: Any) -> None:
    meta = answer.get("metadata") if isinstance(answer, dict) else None
    if not isinstance(meta, dict) or not meta.get("uid") or not meta.get("resourceVersion"):
        return  # a Status (a deletion's answer): nothing whose echo could come
    line = (json.dumps([meta["uid"], meta["resourceVersion"]]) + "\n").encode()
    # One append of one short line: whole also when the run's processes write at once.
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


class WatchStream:
    """The events of one WATCH, in order, as ``{"type": ..., "object": ...}``.

    Handles what every watcher would otherwise repeat: BOOKMARK events are not yielded but move
    ``resource_version``, as every event does, so a caller resumes from there once the server
    ends the stream; an ERROR event raises ``ApiError`` with its code (410 Gone: the version
    is too old, list again); a connection lost mid-stream raises ``ApiError`` with status 0."""

    def __init__(self, response: urllib3.BaseHTTPResponse, *, resource_version: str, server: str) -> None:
        self._response = response
        self._server = server
        self.resource_version = resource_version

    def __iter__(self) -> Iterator[dict]:
        pending = b""
        try:
            for chunk in self._response.stream(amt=None):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    event = self._event(line)
                    if event is not None:
                        yield event
            if pending.strip():
                event = self._event(pending)
                if event is not None:
                    yield event
        except urllib3.exceptions.HTTPError as error:
            raise ApiError(status=0, reason="unreachable", message=f"{self._server}: {error}") from None
        finally:
            self.close()

    def _event(self, line: bytes) -> dict | None:
        if not line.strip():
            return None
        event = json.loads(line)
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":
            raise ApiError(status=int(obj.get("code") or 0), reason=obj.get("reason") or "watch error",
                           message=obj.get("message", ""))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        return None if event.get("type") == "BOOKMARK" else event

    def close(self) -> None:
        """End the stream (the connection is dropped, not reused: the server may still be writing)."""
        self._response.close()


class ApiClients:
    """One ApiClient per (kubeconfig, context), made on first use and shared by threads, so
    that everything a process asks of one API server goes over one client's connections.
    ``forget`` drops one: its next use reads the kubeconfig again (credentials from an exec
    plugin or a token file expire, and the daemon outlives them)."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str | None, str | None], ApiClient] = {}
        self._guard = threading.Lock()

    def get(self, kubeconfig: str | None, context: str | None) -> ApiClient:
        with self._guard:
            if (kubeconfig, context) not in self._clients:
                self._clients[kubeconfig, context] = ApiClient(load_endpoint(kubeconfig=kubeconfig, context=context))
            return self._clients[kubeconfig, context]

    def forget(self, kubeconfig: str | None, context: str | None) -> None:
        with self._guard:
            self._clients.pop((kubeconfig, context), None)


def _refusal(response: urllib3.BaseHTTPResponse) -> ApiError:
    message = ""
    try:
        status = json.loads(response.data)
        message = status.get("message", "")
        reason = status.get("reason") or response.reason or ""
    except (ValueError, AttributeError):
        reason = response.reason or ""
        message = response.data.decode(errors="replace")[:300]
    return ApiError(status=response.status, reason=reason, message=message)
