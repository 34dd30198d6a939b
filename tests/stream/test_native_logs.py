"""The face tracker's native log lines are dropped from a command's stderr; nothing else is."""

from __future__ import annotations

import subprocess
import sys

from stream.native_logs import is_native_log_line

NATIVE = [
    b"W0000 00:00:1796313049.142959   31806 inference_feedback_manager.cc:114] Feedback manager requires "
    b"a model with a single signature inference. Disabling support for feedback tensors.",
    b"W0000 00:00:1796312739.775154   30370 landmark_projection_calculator.cc:186] Using NORM_RECT without "
    b"IMAGE_DIMENSIONS is only supported for the square ROI.",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796313049.1 31806 gl_context.cc:357] GL version: 3.2",
]
OURS = [
    b"WARNING engine.data.features: skipped (--skip-empty): a.mp4: yields no snippet",
    b"error: W0000.mp4: no such file",
    b"INFO: the rest of a line",
    b"cam0 #1 event mae frames 16-63 (0.533-2.100 s) score 0.962 latency 0.546 s",
]

CHILD = r"""
import os, sys
from stream.native_logs import quiet_native_logs
installed = quiet_native_logs(verbose=sys.argv[1] == "verbose")
native, ours = eval(sys.argv[2]), eval(sys.argv[3])
for line in native + ours:  # as the C++ code writes: straight to descriptor 2
    os.write(2, line + b"\n")
print("python stderr", installed, file=sys.stderr)
print("python stdout")
raise SystemExit("a fatal message")
"""


def test_native_lines_are_recognised_and_ours_are_not() -> None:
    assert all(is_native_log_line(line) for line in NATIVE)
    assert not any(is_native_log_line(line) for line in OURS)


def test_a_command_drops_them_unless_verbose() -> None:
    for mode in ("quiet", "verbose"):
        run = subprocess.run(
            [sys.executable, "-c", CHILD, mode, repr(NATIVE), repr(OURS)], capture_output=True, timeout=60
        )
        err = run.stderr.splitlines()
        assert run.returncode == 1 and run.stdout == b"python stdout\n"
        assert b"a fatal message" in err and all(line in err for line in OURS), err
        if mode == "quiet":
            assert b"python stderr True" in err and not any(line in err for line in NATIVE), err
        else:
            assert b"python stderr False" in err and all(line in err for line in NATIVE), err
