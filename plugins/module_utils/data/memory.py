"""Root's small files under /run/dtservice that let a machine's later passes skip work an
earlier pass did: ``podnet``'s namespaces of pods, ``mangle``'s mangle tables.

Owns reading one (a file missing or unreadable is an empty memory: the work is done again)
and writing one whole: a temporary file in the same 0700 folder, mode 0600, renamed over it,
so that passes of the machine running at once never read half a file; the last one wins.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

__all__ = ["WRITING_PREFIX", "read_memory", "write_memory"]

# Files being written start so: a folder's reader passes them by.
WRITING_PREFIX = ".writing-"


def read_memory(path: str) -> dict[str, Any]:
    """The JSON object in ``path``; empty if there is none or it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            held = json.load(handle)
    except (OSError, ValueError):
        return {}
    return held if isinstance(held, dict) else {}


def write_memory(path: str, content: dict[str, Any]) -> None:
    """``content`` as the whole of ``path``; raises ``OSError`` when it cannot be written."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    descriptor, scratch = tempfile.mkstemp(dir=folder, prefix=WRITING_PREFIX)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(content, handle)
        os.replace(scratch, path)
    except BaseException:
        os.unlink(scratch)
        raise
