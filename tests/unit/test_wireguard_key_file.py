"""The private key reaches ``wg`` only through a 0600 file in a 0700 directory, gone after use."""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.data.wireguard import (
    KEY_DIR_PREFIX,
    _with_key_file,
    sweep_key_files,
)


def look(seen: list, fail: bool):
    def use(path: str) -> None:
        with open(path) as handle:
            seen.append((path, handle.read(), os.stat(path).st_mode & 0o777,
                         os.stat(os.path.dirname(path)).st_mode & 0o777))
        if fail:
            raise RuntimeError("wg failed")
    return use


@pytest.mark.parametrize("fail", [False, True])
def test_the_key_file_is_private_and_removed_whatever_happens(fail):
    seen: list = []
    with pytest.raises(RuntimeError) if fail else contextlib.nullcontext():
        _with_key_file("PrivateKey = secret\n", look(seen, fail))
    [(path, text, mode, dir_mode)] = seen
    assert (text, mode, dir_mode) == ("PrivateKey = secret\n", 0o600, 0o700)
    assert not os.path.exists(os.path.dirname(path))


def test_key_directories_of_killed_runs_are_swept_and_live_ones_kept(tmp_path):
    """A SIGKILLed run leaves its directory behind; the next run removes it, never a live one's."""
    dead = _exited_pid()
    left = tmp_path / f"{KEY_DIR_PREFIX}{dead}-abc"
    live = tmp_path / f"{KEY_DIR_PREFIX}{os.getpid()}-def"
    other = tmp_path / "someone-elses"
    for directory in (left, live, other):
        directory.mkdir()
        (directory / "wg.conf").write_text("PrivateKey = secret\n")
    sweep_key_files(str(tmp_path))
    assert not left.exists() and live.exists() and other.exists()


def _exited_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
