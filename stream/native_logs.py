"""Quiet MediaPipe's and TensorFlow Lite's native log lines unless the user asks for them.

The face tracker's C++ code writes straight to file descriptor 2, before any log set-up of its own
can take effect (``W0000 ... inference_feedback_manager.cc:114] ...``, ``INFO: Created TensorFlow
Lite XNNPACK delegate for CPU.``, ``WARNING: All log messages before absl::InitializeLog() ...``),
on every run and whatever ``--quiet`` says; no environment variable silences them. So a command
line program may route descriptor 2 through a pipe whose reader drops those lines and passes every
other byte on, while Python's own ``sys.stderr`` writes to the original descriptor directly (its
messages, tracebacks included, never wait on the reader thread).

Only a command line entry calls `quiet_native_logs`, once, before the tracker is built; library
code and tests never do (a test runner that captures stderr keeps its own descriptors).
"""

from __future__ import annotations

import atexit
import io
import os
import re
import sys
import threading

# Lines the native libraries print by themselves: glog/absl prefixes with a zero date (absl before
# its InitializeLog), and TensorFlow Lite's delegate and absl's pre-init notices.
NATIVE_LINE = re.compile(
    rb"^(?:[IWE]0000 \d\d:\d\d:\d\d[.\d]* +\d+ [\w.]+:\d+\] "
    rb"|INFO: Created TensorFlow Lite \w+ delegate"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)

_installed = False


def is_native_log_line(line: bytes) -> bool:
    """True for a line the face tracker's native libraries print by themselves."""
    return NATIVE_LINE.match(line) is not None


def quiet_native_logs(verbose: bool = False) -> bool:
    """Drop the native libraries' log lines from this process's stderr (kept when verbose).

    Returns True when the filter was installed: not when verbose, not twice, and not when
    ``sys.stderr`` is not descriptor 2 (a test runner capturing it, an embedding application).
    """
    global _installed
    if verbose or _installed:
        return False
    try:
        if sys.stderr is None or sys.stderr.fileno() != 2:
            return False
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    os.set_inheritable(2, True)
    # Python's messages bypass the filter: a new text stream on the original descriptor.
    sys.stderr = io.TextIOWrapper(
        io.FileIO(original, "w", closefd=False), encoding=sys.stderr.encoding, errors="backslashreplace",
        line_buffering=True,
    )  # fmt: skip
    reader = threading.Thread(
        target=_forward, args=(read_end, original), name="mespot-native-logs", daemon=True
    )
    reader.start()

    def restore() -> None:
        # Descriptor 2 back on the original: the pipe's last write end closes, the reader passes
        # on what is left and stops, so nothing written just before exit is lost.
        sys.stderr.flush()
        os.dup2(original, 2)
        reader.join(2.0)

    atexit.register(restore)
    _installed = True
    return True


def _forward(read_end: int, original: int) -> None:
    """Pass every line but the native log lines on to the original stderr, until the pipe closes."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_end, 65536)
        except OSError:
            return
        if not chunk:
            if pending:
                _write(original, pending)
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not is_native_log_line(line))
        if kept:
            _write(original, kept)
        if len(pending) > 65536:  # no newline in sight: pass it on as it is
            _write(original, pending)
            pending = b""


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError:
            return
        view = view[written:]
