"""The client's streaming WATCH and the daemon's watch loop, against a small local HTTP server
that answers as a Kubernetes API server does (chunked JSON lines): bookmarks, 410 Gone,
refusals and a server that goes away. A real API server is watched by the daemon's
integration tests."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import (
    ApiClient,
    ApiClients,
    ApiError,
    Endpoint,
)
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.schedule import WatchRetry
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.settings import WatchedNode
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.watches import Watch

PATH = "/apis/sid.sightlineinnovation.com/v1/namespaces/ns0/dtservices"


def obj(name: str, version: str) -> dict:
    return {"metadata": {"name": name, "resourceVersion": version}}


class FakeApiServer:
    """Answers each request with the next scripted answer for its verb (the last one repeats):
    ``("list", version, items)``, ``("events", [event, ...], close)`` for a watch (``close``:
    drop the connection mid-stream), or ``("status", code)``."""

    def __init__(self, *, lists: list, watches: list) -> None:
        self.script = {"list": lists, "watch": watches}
        self.requests: list[tuple[str, dict]] = []
        self.tokens: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                verb = "watch" if query.get("watch") == "1" else "list"
                server.requests.append((verb, query))
                answers = server.script[verb]
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                server.tokens.append(self.headers.get("Authorization"))
                if answer[0] == "status":
                    reason = {401: "Unauthorized", 403: "Forbidden"}.get(answer[1], "InternalError")
                    self._json(answer[1], {"kind": "Status", "code": answer[1], "reason": reason,
                                           "message": "dtservices is forbidden"})
                elif answer[0] == "list":
                    self._json(200, {"metadata": {"resourceVersion": answer[1]}, "items": answer[2]})
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for event in answer[1]:
                        line = json.dumps(event).encode() + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
                    if answer[2]:
                        self.wfile.write(b"ff\r\n{\"type\": \"ADD")  # half a chunk, then the server is gone
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self.wfile.write(b"0\r\n\r\n")

            def _json(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def verbs(self) -> list[str]:
        return [verb for verb, _path in self.requests]


def client(server: FakeApiServer) -> ApiClient:
    return ApiClient(Endpoint(server=server.url))


# -- ApiClient.watch -----------------------------------------------------------------------------
def test_watch_yields_events_and_bookmarks_only_move_the_version():
    events = [{"type": "ADDED", "object": obj("a", "11")},
              {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
              {"type": "DELETED", "object": obj("a", "16")},
              {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}}]
    with FakeApiServer(lists=[("list", "10", [])], watches=[("events", events, False)]) as server:
        stream = client(server).watch(PATH, resource_version="10", timeout_seconds=7)
        seen = [(e["type"], e["object"]["metadata"]["name"]) for e in stream]
        assert seen == [("ADDED", "a"), ("DELETED", "a")]
        assert stream.resource_version == "20"
        (_verb, query), = server.requests
        assert query == {"watch": "1", "resourceVersion": "10", "allowWatchBookmarks": "true", "timeoutSeconds": "7"}


def test_watch_raises_410_for_an_expired_version():
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                        "message": "too old resource version: 10 (200)"}}
    with FakeApiServer(lists=[("list", "10", [])], watches=[("events", [gone], False)]) as server:
        with pytest.raises(ApiError) as raised:
            list(client(server).watch(PATH, resource_version="10"))
    assert raised.value.status == 410 and "too old" in raised.value.message


def test_watch_raises_a_refusal_at_start_and_a_lost_server_mid_stream():
    with FakeApiServer(lists=[("list", "10", [])], watches=[("status", 403)]) as server:
        with pytest.raises(ApiError) as raised:
            client(server).watch(PATH, resource_version="10")
    assert raised.value.status == 403 and raised.value.message == "dtservices is forbidden"
    events = [{"type": "ADDED", "object": obj("a", "11")}]
    with FakeApiServer(lists=[("list", "10", [])], watches=[("events", events, True)]) as server:
        stream = client(server).watch(PATH, resource_version="10")
        seen = []
        with pytest.raises(ApiError) as raised:
            seen.extend(stream)
    assert [e["type"] for e in seen] == ["ADDED"] and raised.value.status == 0
    assert stream.resource_version == "11"


# -- the daemon's watch loop ---------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def listed(self, node, kind, items):
        self.seen.append(("listed", node, kind, [i["metadata"]["name"] for i in items]))

    def event(self, node, kind, event, obj):
        self.seen.append((event, node, kind, obj["metadata"]["name"]))


def exec_kubeconfig(tmp_path: Path, server: FakeApiServer) -> str:
    """A kubeconfig whose credential plugin hands out a new token each time it runs."""
    plugin = tmp_path / "credential"
    plugin.write_text("#!/bin/sh\necho x >> \"$0.count\"\n"
                      "printf '{\"status\": {\"token\": \"t%s\"}}' \"$(wc -l < \"$0.count\")\"\n")
    plugin.chmod(0o700)
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "main",
              "clusters": [{"name": "c", "cluster": {"server": server.url}}],
              "users": [{"name": "u", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                                        "command": str(plugin)}}}],
              "contexts": [{"name": "main", "context": {"cluster": "c", "user": "u"}}]}
    (tmp_path / "kubeconfig").write_text(json.dumps(config))
    return str(tmp_path / "kubeconfig")


def run_watch(server: FakeApiServer, *, seconds: float, retry: WatchRetry, kubeconfig: str) -> Recorder:
    recorder, stopping = Recorder(), threading.Event()
    watch = Watch(node=WatchedNode(name="node0", namespace="ns0", kubeconfig=kubeconfig), kind="dtservices",
                  clients=ApiClients(), listener=recorder, stopping=stopping, retry=retry)
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    time.sleep(seconds)
    stopping.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    return recorder


def test_the_loop_lists_again_after_410_and_resumes_after_a_normal_end(tmp_path):
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}
    with FakeApiServer(
            lists=[("list", "10", [obj("a", "9")]), ("list", "30", [obj("a", "9"), obj("b", "29")])],
            watches=[("events", [{"type": "MODIFIED", "object": obj("a", "12")}], False),  # ends: resume from 12
                     ("events", [gone], False),  # expired: list again
                     ("events", [{"type": "ADDED", "object": obj("c", "31")}], False),
                     ("events", [], False)]) as server:
        recorder = run_watch(server, seconds=0.6, retry=WatchRetry(first=0.2, cap=0.2),
                             kubeconfig=exec_kubeconfig(tmp_path, server))
    assert recorder.seen[:4] == [("listed", "node0", "dtservices", ["a"]), ("MODIFIED", "node0", "dtservices", "a"),
                                 ("listed", "node0", "dtservices", ["a", "b"]), ("ADDED", "node0", "dtservices", "c")]
    versions = [(verb, q.get("resourceVersion")) for verb, q in server.requests]
    assert versions[:5] == [("list", None), ("watch", "10"), ("watch", "12"), ("list", None), ("watch", "30")]


def test_a_refused_watch_backs_off_and_logs_boundedly(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dtservice-reconciler")
    with FakeApiServer(lists=[("list", "10", [])], watches=[("status", 403)]) as server:
        run_watch(server, seconds=1.0, retry=WatchRetry(first=0.02, cap=0.16, remind_every=60),
                  kubeconfig=exec_kubeconfig(tmp_path, server))
    watches = server.verbs().count("watch")
    # 0.02 + 0.04 + 0.08 + 0.16 + 0.16 ... in a second: about 8 tries, never hundreds.
    assert 4 <= watches <= 12
    assert server.verbs().count("list") == 1  # a refused watch resumes, it does not list again
    failed = [r.fields for r in caplog.records if r.getMessage() == "watch failed"]
    assert [f["retry_in"] for f in failed] == [0.02, 0.04, 0.08, 0.16]  # the first, then each longer wait only
    assert failed[0]["status"] == 403 and failed[0]["error"] == "dtservices is forbidden"


def test_a_lost_server_backs_off_then_the_watch_resumes_where_it_was(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dtservice-reconciler")
    with FakeApiServer(lists=[("list", "10", [])],
                       watches=[("events", [{"type": "ADDED", "object": obj("a", "11")}], True),
                                ("events", [], True),
                                ("events", [{"type": "ADDED", "object": obj("b", "12")}], False),
                                ("events", [], False)]) as server:
        recorder = run_watch(server, seconds=0.5, retry=WatchRetry(first=0.05, cap=0.1),
                             kubeconfig=exec_kubeconfig(tmp_path, server))
    assert recorder.seen[:3] == [("listed", "node0", "dtservices", []), ("ADDED", "node0", "dtservices", "a"),
                                 ("ADDED", "node0", "dtservices", "b")]
    versions = [q.get("resourceVersion") for verb, q in server.requests if verb == "watch"]
    assert versions[:4] == ["10", "11", "11", "12"]  # no list again, no event replayed
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("watch failed") == 2 and messages.count("watch recovered") == 1


def test_a_401_runs_the_credential_plugin_again(tmp_path):
    with FakeApiServer(lists=[("list", "10", [])],
                       watches=[("status", 401), ("events", [{"type": "ADDED", "object": obj("a", "11")}], False),
                                ("events", [], False)]) as server:
        recorder = run_watch(server, seconds=0.5, retry=WatchRetry(first=0.05, cap=0.1),
                             kubeconfig=exec_kubeconfig(tmp_path, server))
    assert server.tokens[:3] == ["Bearer t1", "Bearer t1", "Bearer t2"]  # list, refused watch, then a new token
    assert ("ADDED", "node0", "dtservices", "a") in recorder.seen
