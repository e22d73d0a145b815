"""Work in a forked second process, side by side with this one: ``SecondProcess(work)``.

Owns one thing: running ``work`` in a child of this process, with one meeting point that
neither passes before the other has reached it (``meet`` here, the ``meet`` handed to
``work`` there), and handing the child's answer back (``answer``). A converged pass is one
thread's CPU work (examining interfaces), which threads cannot share out; a second process
runs half of it on the machine's other core.

The child starts with this process's memory, so it forks only where no other thread of this
process is at work (a lock one held would stay held in the child). The API connections
inherited are not used by the child (``kube.client`` drops them there), nor closed by it, so
this process's go on as before."""

from __future__ import annotations

import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from typing import Any


class SecondProcessLost(RuntimeError):
    """The child ended without an answer (it failed, was killed, or did not finish in time)."""


class SecondProcess:
    """``work(meet)`` in a forked child, whose answer comes back pickled through a pipe (it
    must hold no secret: the pipe is this process's own, but answers never do). ``meet()``
    there returns once this process has called ``meet`` too, and the other way round."""

    def __init__(self, work: Callable[[Callable[[], None]], Any], *, timeout: float) -> None:
        answer_out, answer_in = os.pipe()
        reached_out, reached_in = os.pipe()
        go_out, go_in = os.pipe()
        pid = os.fork()
        if pid == 0:
            for unused in (answer_out, reached_out, go_in):
                os.close(unused)
            _run_child(work, answer_in=answer_in, reached_in=reached_in, go_out=go_out)
        for unused in (answer_in, reached_in, go_out):
            os.close(unused)
        self._pid = pid
        self._answer, self._reached, self._go = answer_out, reached_out, go_in
        self._deadline = time.monotonic() + timeout

    def meet(self) -> None:
        """Wait until the child has reached its ``meet()`` (or ended, or the time is up), then
        let it go on: from here on, both have done what came before."""
        if self._go < 0:
            return
        try:
            if self._readable(self._reached):
                os.read(self._reached, 1)
            os.write(self._go, b".")
        except OSError:
            pass  # the child has ended: its answer says how
        finally:
            os.close(self._go)
            os.close(self._reached)
            self._go = -1

    def answer(self) -> Any:
        """The child's answer, once it has ended; raises ``SecondProcessLost`` without one."""
        self.meet()
        chunks, ended = [], False
        try:
            while not ended:
                if not self._readable(self._answer):
                    raise SecondProcessLost("the second process did not finish in time")
                chunk = os.read(self._answer, 1 << 20)
                chunks.append(chunk)
                ended = not chunk
        finally:
            os.close(self._answer)
            if not ended:
                os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)  # ending when its answer has ended, or killed
        try:
            return pickle.loads(b"".join(chunks))  # noqa: S301 - written by our own child, over our own pipe
        except (pickle.UnpicklingError, EOFError) as error:
            raise SecondProcessLost(f"the second process ended without its answer ({error})") from None

    def _readable(self, pipe: int) -> bool:
        """Whether ``pipe`` has something to read (or its end) before the time is up."""
        left = self._deadline - time.monotonic()
        return left > 0 and bool(select.select([pipe], [], [], left)[0])


def _run_child(work: Callable[[Callable[[], None]], Any], *, answer_in: int, reached_in: int, go_out: int) -> None:
    """The child's whole life: the work, its answer written, then the end, without running
    anything this process's exit would (handlers, buffers, finalizers are the parent's)."""
    status = 1
    try:
        def meet() -> None:
            os.write(reached_in, b".")
            os.read(go_out, 1)

        payload = pickle.dumps(work(meet))
        with os.fdopen(answer_in, "wb") as out:
            out.write(payload)
        status = 0
    finally:
        os._exit(status)
