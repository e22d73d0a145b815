"""kube.cluster.Listing's locking: namespaces are listed side by side, a write waits for a LIST
of its namespace in flight, and a LIST overtaken by ``forget`` is not kept. The API server
here is a stand-in that holds each LIST until the test lets it answer, the only way to make
the overlaps certain; Listing against a real API server runs in every integration test."""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiError
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Connections, Listing

WAIT = 10


def item(namespace: str, name: str, version: str = "1") -> dict:
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": version}}


class HeldApi:
    """Answers ``GET /ns/<namespace>`` (or ``/all``) from ``objects``, each LIST only once the
    test releases it; counts LISTs and the most in flight at once."""

    def __init__(self, objects: dict[str, list[dict]], *, refuse_whole: bool = False) -> None:
        self.objects = objects
        self.refuse_whole = refuse_whole
        self.started: dict[str, threading.Event] = defaultdict(threading.Event)
        self.release: dict[str, threading.Event] = defaultdict(threading.Event)
        self.lists: list[str] = []
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()

    def request(self, method: str, path: str, query=None) -> dict:
        assert method == "GET"
        with self._lock:
            self.lists.append(path)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.started[path].set()
        try:
            assert self.release[path].wait(WAIT), f"{path} was never released"
            if path == "/all":
                if self.refuse_whole:
                    raise ApiError(status=403, reason="Forbidden")
                return {"items": [i for items in self.objects.values() for i in items]}
            return {"items": list(self.objects.get(path.removeprefix("/ns/"), []))}
        finally:
            with self._lock:
                self.in_flight -= 1


def listing(api: HeldApi, *, whole: bool = False) -> Listing:
    return Listing(api=api, namespace_path=lambda ns: f"/ns/{ns}", cluster_path="/all" if whole else None)


def in_thread(work, results: dict, key: str) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.__setitem__(key, work()))
    thread.start()
    return thread


def reading_a(api: HeldApi) -> tuple[Listing, dict, threading.Thread]:
    """A listing, and a reader of namespace a whose LIST is in flight (held)."""
    shared = listing(api)
    results: dict = {}
    reader = in_thread(lambda: shared.items("a"), results, "read")
    assert api.started["/ns/a"].wait(WAIT)
    return shared, results, reader


def test_namespaces_are_listed_side_by_side_and_each_once():
    api = HeldApi({"a": [item("a", "x")], "b": [item("b", "y")]})
    shared = listing(api)
    results: dict = {}
    threads = [in_thread(lambda ns=ns: shared.items(ns), results, f"{ns}{k}") for ns in "ab" for k in range(3)]
    assert api.started["/ns/a"].wait(WAIT) and api.started["/ns/b"].wait(WAIT)
    assert api.most_in_flight == 2, "the second namespace waited for the first one's LIST"
    api.release["/ns/a"].set()
    api.release["/ns/b"].set()
    for thread in threads:
        thread.join(WAIT)
    assert sorted(api.lists) == ["/ns/a", "/ns/b"]
    assert all(results[f"a{k}"] == [item("a", "x")] and results[f"b{k}"] == [item("b", "y")] for k in range(3))


def test_a_write_waits_for_the_list_in_flight_and_is_kept():
    api = HeldApi({"a": [item("a", "x", "1")]})
    shared, _results, reader = reading_a(api)
    writer = threading.Thread(target=shared.put, args=(item("a", "x", "2"),))
    writer.start()
    writer.join(0.2)
    assert writer.is_alive(), "the write did not wait for the LIST of its namespace"
    api.release["/ns/a"].set()
    reader.join(WAIT)
    writer.join(WAIT)
    assert shared.items("a") == [item("a", "x", "2")], "the older LIST answer replaced the write"
    assert api.lists == ["/ns/a"]


def test_a_list_overtaken_by_forget_answers_its_caller_and_is_not_kept():
    api = HeldApi({"a": [item("a", "x", "1")]})
    shared, results, reader = reading_a(api)
    shared.forget()
    api.objects["a"] = [item("a", "x", "2")]
    api.release["/ns/a"].set()
    reader.join(WAIT)
    assert results["read"] == [item("a", "x", "2")]
    assert shared.items("a") == [item("a", "x", "2")]
    assert api.lists == ["/ns/a", "/ns/a"], "the overtaken answer was kept instead of listing again"


def test_the_whole_cluster_is_listed_once_for_every_namespace():
    api = HeldApi({"a": [item("a", "x")], "b": [item("b", "y")]})
    shared = listing(api, whole=True)
    api.release["/all"].set()
    assert shared.items("a") == [item("a", "x")]
    assert shared.items("b") == [item("b", "y")]
    assert shared.items("c") == []
    assert api.lists == ["/all"]


def test_a_refused_cluster_wide_list_falls_back_to_namespaces():
    api = HeldApi({"a": [item("a", "x")], "b": [item("b", "y")]}, refuse_whole=True)
    shared = listing(api, whole=True)
    for path in ("/all", "/ns/a", "/ns/b"):
        api.release[path].set()
    assert shared.items("a") == [item("a", "x")]
    assert shared.items("b") == [item("b", "y")]
    assert api.lists == ["/all", "/ns/a", "/ns/b"]


def test_a_refused_whole_cluster_listing_without_namespace_path_is_the_callers():
    """A kubelet's listing of its Kubernetes node's pods has no namespace to fall back to: the
    refusal goes to the caller (who lists the namespace as the provisioner) and no namespace
    LIST is sent with the kubelet's credential."""
    api = HeldApi({"a": [item("a", "x")]}, refuse_whole=True)
    kubelets = Listing(api=api, namespace_path=None, cluster_path="/all")
    api.release["/all"].set()
    with pytest.raises(ApiError) as refused:
        kubelets.items("a")
    assert refused.value.status == 403
    assert api.lists == ["/all"]


def test_a_whole_cluster_listing_knows_a_namespace_without_objects_there():
    api = HeldApi({"a": [item("a", "x")]})
    kubelets = Listing(api=api, namespace_path=None, cluster_path="/all")
    api.release["/all"].set()
    assert kubelets.items("b") == [] and kubelets.items("a") == [item("a", "x")]
    assert api.lists == ["/all"]


def test_a_grouped_listing_files_each_object_under_its_group_and_so_do_writes():
    """Key Secrets: one LIST of one namespace, each filed under the namespace its name begins
    with; a write, a deletion and a second read go to the same group, and nothing is listed again."""
    keys = [item("keys", "a.net"), item("keys", "b.net"), item("keys", "b.other")]
    api = HeldApi({"keys": keys})
    grouped = Listing(api=api, namespace_path=None, cluster_path="/all",
                      group=lambda obj: obj["metadata"]["name"].split(".", 1)[0])
    api.release["/all"].set()
    assert grouped.items("a") == [keys[0]] and grouped.items("b") == keys[1:] and grouped.items("c") == []
    grouped.put(item("keys", "c.net", "2"))
    grouped.drop("b", "b.other")
    assert grouped.items("c") == [item("keys", "c.net", "2")] and grouped.items("b") == [keys[1]]
    assert api.lists == ["/all"]


def test_callers_get_copies():
    api = HeldApi({"a": [item("a", "x")]})
    shared = listing(api)
    api.release["/ns/a"].set()
    shared.items("a")[0]["metadata"]["name"] = "changed"
    assert shared.items("a") == [item("a", "x")]


def test_shared_readers_get_the_kept_objects_and_a_writer_keeps_no_reference():
    api = HeldApi({"a": [item("a", "x")]})
    shared = listing(api)
    api.release["/ns/a"].set()
    first, again = shared.items("a", shared=True), shared.items("a", shared=True)
    assert first[0] is again[0], "a reader that only reads was given a copy"
    written = item("a", "x", "2")
    shared.put(written)
    written["metadata"]["name"] = "changed after the write"
    assert shared.items("a", shared=True) == [item("a", "x", "2")]
    assert shared.items("a") == [item("a", "x", "2")]


def domain_object(name: str, members: list[str]) -> dict:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": "1"},
            "spec": {"members": [{"name": m, "namespace": f"dtaas-{m}-dtaas", "address": "198.18.0.10"}
                                 for m in members]}}


def test_a_shared_domain_object_is_read_once_and_another_object_anew():
    connections = Connections()
    listed = domain_object("mydomain", ["node0", "node1"])
    first = connections.domain(listed)
    assert [m.name for m in first.members] == ["node0", "node1"]
    assert connections.domain(listed) is first
    # A written answer is another object: what it says is read, not what was read before.
    written = domain_object("mydomain", ["node0", "node1", "node2"])
    assert [m.name for m in connections.domain(written).members] == ["node0", "node1", "node2"]
    assert connections.domain(listed) is first
