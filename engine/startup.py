"""Start-up of the command-line programs: a signal before the program is ready ends it quietly.

Importing torch, MediaPipe and the model takes seconds; a SIGINT or SIGTERM then would otherwise
print a KeyboardInterrupt traceback or kill the process by the signal (exit -2 / -15), and leave no
trace in the journal. Inside `startup_signals` both signals raise `StartupInterrupted` instead; the
context manager catches it, appends a "stopped during start-up" status line to the journal the
command line asks for (``--journal FILE``), and exits with 128 + the signal (130, 143). The
program replaces the handlers with its own once it can stop cleanly (`stop_on_signals`); after that,
this guard does nothing.

No signal is lost between the two. An import can swallow the `StartupInterrupted` (a bare
``except:``, a C extension's module init that clears the error, a ``__del__`` whose exception Python
only prints), and start-up then goes on. The signal stays recorded: `stop_on_signals` hands it to
the program's own stop at once, and a block that ends without having handed it over exits as if
the exception had come through.

This module imports only the standard library, so that it is in place before the heavy imports.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["StartupInterrupted", "startup_signals", "stop_on_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StartupInterrupted(BaseException):
    """SIGINT or SIGTERM came during start-up (a BaseException: no ``except Exception`` hides it).

    Attributes:
        signum: the signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # the signals `_raise` turned into StartupInterrupted, not yet handled


def _take_received() -> list[int]:
    """The signals received during start-up and not yet handled; none after this call."""
    taken = list(_received)
    _received.clear()
    return taken


def _raise(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise StartupInterrupted(signum)


@contextlib.contextmanager
def startup_signals(journal: Callable[[], tuple[str, str] | None] | None = None) -> Iterator[None]:
    """SIGINT / SIGTERM inside the block exit quietly with 130 / 143 (module docstring).

    Args:
        journal: returns the (journal file, stream) to note the stop in, or None; called only
            when a signal came.

    Raises:
        SystemExit: 128 + the signal, when one came during the block.
    """
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    _received.clear()
    for s in _SIGNALS:
        signal.signal(s, _raise)
    try:
        yield
        swallowed = _take_received()  # a signal some import swallowed, never handed over
        if swallowed:
            _exit_quietly(swallowed[0], journal)
    except (StartupInterrupted, ImportError) as exc:
        # A C extension being imported (NumPy's, for one) turns the StartupInterrupted raised
        # inside its import into an ImportError: that is the same signal.
        received = _take_received()
        if isinstance(exc, StartupInterrupted):
            signum = exc.signum
        elif received:
            signum = received[0]
        else:
            raise
        _exit_quietly(signum, journal)
    finally:
        for s in _SIGNALS:
            if signal.getsignal(s) in (_raise, signal.SIG_IGN):  # not replaced by the program
                signal.signal(s, previous[s])


def _exit_quietly(signum: int, journal: Callable[[], tuple[str, str] | None] | None) -> None:
    """Note a start-up stop by `signum` in the journal and on stderr; exit with 128 + it."""
    for s in _SIGNALS:  # a second signal while noting the first one changes nothing
        signal.signal(s, signal.SIG_IGN)
    name = signal.Signals(signum).name
    where = journal() if journal is not None else None
    if where is not None:
        try:
            from stream.publish import journal_status_line

            journal_status_line(where[0], where[1], f"stopped during start-up ({name})")
        except Exception as exc:  # the exit status still says what happened
            print(f"error: journal {where[0]}: {exc}", file=sys.stderr, flush=True)
    print(f"stopped during start-up ({name})", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum) from None


def stop_on_signals(stop: threading.Event, received: list[int] | None = None) -> None:
    """SIGINT and SIGTERM set `stop` (a second one aborts with KeyboardInterrupt); main thread only.

    A start-up signal that an import swallowed (module docstring) sets `stop` here, as if it had
    come just now.

    Args:
        stop: the event to set.
        received: the signal numbers are appended here (`run_live` tells a stop during start-up).
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        if received is not None:
            received.append(signum)
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    for signum in _take_received()[:1]:  # after the new handlers: none can slip between
        handler(signum, None)
