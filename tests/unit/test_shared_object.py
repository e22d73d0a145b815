"""kube.cluster.SharedObject.write_together: the changes threads queue while the object is being
written go in the next write, together; each caller gets the object as written, or its own
change's error, or the error of the write that carried it. The write here is a stand-in that
holds the first write until the other threads have queued, the only way to make the overlap
certain; claims on a real hub's table go through it in every integration test that joins."""

from __future__ import annotations

import threading
import time

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import SharedObject

WAIT = 10


class HeldStore:
    """One object; ``write(desired)`` stores ``desired(stored)``, the first one only once the
    test releases it. ``conflicts`` writes are answered with another writer's object first,
    as a 409 makes ``update_service`` read again and call ``desired`` once more."""

    def __init__(self, *, conflicts: int = 0, fail: bool = False) -> None:
        self.stored: dict = {"claims": []}
        self.writes = 0
        self.conflicts = conflicts
        self.fail = fail
        self.writing = threading.Event()
        self.release = threading.Event()

    def write(self, desired) -> dict:
        if self.writes == 0:
            self.writing.set()
            assert self.release.wait(WAIT)
        self.writes += 1
        body = desired(self.stored)
        while self.conflicts:
            self.conflicts -= 1
            self.stored = {"claims": [*self.stored["claims"], "someone else"]}
            body = desired(self.stored)
        if self.fail:
            raise OSError("the API server went away")
        self.stored = body
        return body


def claim(name: str):
    def change(current: dict) -> dict:
        if name.startswith("bad"):
            raise ValueError(f"{name} cannot be claimed")
        return {"claims": [*current["claims"], name]}
    return change


def run_held(shared: SharedObject, store: HeldStore, names: list[str]) -> dict[str, object]:
    """The first name's write held until every other name has queued; name -> answer or error."""
    answers: dict[str, object] = {}

    def call(name: str) -> None:
        try:
            answers[name] = shared.write_together(claim(name), write=store.write)
        except Exception as problem:  # noqa: BLE001 - the test looks at it
            answers[name] = problem

    first = threading.Thread(target=call, args=(names[0],))
    first.start()
    assert store.writing.wait(WAIT)
    others = [threading.Thread(target=call, args=(name,)) for name in names[1:]]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + WAIT
    while len(shared._waiting) < len(others):  # noqa: SLF001 - the overlap the test makes certain
        assert time.monotonic() < deadline, "the other threads never queued"
        time.sleep(0.001)
    store.release.set()
    for thread in [first, *others]:
        thread.join(WAIT)
    return answers


def test_changes_queued_during_a_write_go_in_one_write_and_each_caller_gets_it() -> None:
    shared, store = SharedObject(), HeldStore()
    names = [f"client{i}" for i in range(6)]
    answers = run_held(shared, store, names)
    assert store.writes == 2
    assert sorted(store.stored["claims"]) == sorted(names)
    assert answers["client0"] == {"claims": ["client0"]}
    for name in names[1:]:
        assert answers[name] == store.stored


def test_a_change_that_raises_is_left_out_and_fails_only_its_caller() -> None:
    shared, store = SharedObject(), HeldStore()
    answers = run_held(shared, store, ["client0", "client1", "bad2", "client3"])
    assert isinstance(answers["bad2"], ValueError)
    assert store.stored["claims"] == ["client0", "client1", "client3"]
    assert answers["client3"] == store.stored


def test_changes_are_applied_again_to_what_a_conflict_read() -> None:
    shared, store = SharedObject(), HeldStore()
    run_held(shared, store, ["client0", "client1", "client2"])
    store.conflicts = 1
    again = shared.write_together(claim("client3"), write=store.write)
    assert again["claims"] == ["client0", "client1", "client2", "someone else", "client3"]


def test_a_write_that_fails_fails_every_change_it_carried_and_the_next_write_goes_on() -> None:
    shared, store = SharedObject(), HeldStore(fail=True)
    answers = run_held(shared, store, ["client0", "client1", "bad2"])
    assert all(isinstance(answers[name], OSError) for name in ("client0", "client1"))
    assert isinstance(answers["bad2"], ValueError)
    store.fail = False
    assert shared.write_together(claim("client3"), write=store.write) == {"claims": ["client3"]}


def test_one_thread_alone_writes_its_change_at_once() -> None:
    shared = SharedObject()
    written = shared.write_together(claim("client0"), write=lambda desired: desired({"claims": []}))
    assert written == {"claims": ["client0"]}
    with pytest.raises(ValueError, match="bad1 cannot be claimed"):
        shared.write_together(claim("bad1"), write=lambda desired: desired({"claims": []}))


def test_what_is_derived_from_one_copy_is_made_once_and_again_for_the_next_copy():
    shared, made = SharedObject(), []

    def index(table: dict) -> list:
        made.append(table)
        return sorted(table)

    first, second = {"b": 1, "a": 2}, {"c": 3}
    assert shared.derived(first, index) == ["a", "b"]
    assert shared.derived(first, index) == ["a", "b"]
    assert made == [first], "the same copy is not derived from twice"
    assert shared.derived(second, index) == ["c"]
    assert shared.derived(dict(first), index) == ["a", "b"], "an equal but other copy is derived from anew"
    assert len(made) == 3
