"""Bounded side-by-side work: ``side_by_side(items, work, at_most=n)``.

Owns one thing: running ``work`` for many items in at most ``at_most`` threads and handing
the answers back in the items' order. The work it is used for waits, on API servers, on
handshakes, on processes, rather than computing, so a few threads shorten a pass without
competing for the interpreter. One item, or a bound of one, runs in the caller's thread."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def side_by_side(items: Iterable[T], work: Callable[[T], Any], *, at_most: int) -> list[Any]:
    """``[work(item) for item in items]``, at most ``at_most`` at a time. An exception is
    raised to the caller; in threads, the first item's to fail, once every item has ended."""
    items = list(items)
    if len(items) < 2 or at_most < 2:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(at_most, len(items))) as pool:
        return list(pool.map(work, items))
