"""Start-up of the command-line programs: a signal before the program is ready ends it quietly.

Importing torch, MediaPipe and the model takes seconds; a SIGINT or SIGTERM then would otherwise
print a KeyboardInterrupt traceback or kill the process by the signal (exit -2 / -15), and leave no
trace in the journal. Inside `startup_signals` both signals raise `StartupInterrupted` instead; the
context manager catches it, appends a "stopped during start-up" status line to the journal the
command line asks for (``--journal FILE``), and exits with 128 + the signal (130, 143). The
program replaces the handlers with its own once it can stop cleanly (`engine.live.stop_on_signals`);
after that, this guard does nothing.

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


_received: list[int] = []  # the signals `_raise` turned into StartupInterrupted


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
    except (StartupInterrupted, ImportError) as exc:
        # A C extension being imported (NumPy's, for one) turns the StartupInterrupted raised
        # inside its import into an ImportError: that is the same signal.
        if isinstance(exc, StartupInterrupted):
            signum = exc.signum
        elif _received:
            signum = _received[0]
        else:
            raise
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
    finally:
        for s in _SIGNALS:
            if signal.getsignal(s) in (_raise, signal.SIG_IGN):  # not replaced by the program
                signal.signal(s, previous[s])


def stop_on_signals(stop: threading.Event, received: list[int] | None = None) -> None:
    """SIGINT and SIGTERM set `stop` (a second one aborts with KeyboardInterrupt); main thread only.

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
