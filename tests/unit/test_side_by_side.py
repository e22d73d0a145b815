"""kube/side_by_side.py: answers in the items' order, never more than the bound at once, and
a failure of one item raised to the caller."""

from __future__ import annotations

import threading
import time

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.side_by_side import side_by_side


def test_answers_come_in_the_items_order_and_at_most_the_bound_run_at_once():
    running, most, lock = 0, 0, threading.Lock()

    def work(item: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02 * (item % 3))  # later items finish first
        with lock:
            running -= 1
        return item * item

    assert side_by_side(range(12), work, at_most=4) == [i * i for i in range(12)]
    assert most == 4


def test_one_item_or_a_bound_of_one_runs_in_the_callers_thread():
    caller = threading.get_ident()
    assert side_by_side([1], lambda _item: threading.get_ident(), at_most=8) == [caller]
    assert side_by_side([1, 2], lambda _item: threading.get_ident(), at_most=1) == [caller, caller]


def test_a_failing_item_fails_the_call_after_the_others_ran():
    done = []

    def work(item: int) -> int:
        if item == 1:
            raise ValueError("item 1")
        time.sleep(0.05)
        done.append(item)
        return item

    with pytest.raises(ValueError, match="item 1"):
        side_by_side([0, 1, 2, 3], work, at_most=4)
    assert sorted(done) == [0, 2, 3]
