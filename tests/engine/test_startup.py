"""SIGINT / SIGTERM during start-up: a quiet exit with 130 / 143 and a journal line (engine/startup.py).

``run_live.py`` runs in a subprocess; the signal is sent as soon as its start-up handlers are in
place (read from /proc), which is while torch and the rest are still being imported.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler for `signum` (SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("entry", [["run_live.py"], ["-m", "engine.cli", "live"]], ids=["run_live", "mespot"])
def test_a_signal_during_start_up_imports_exits_quietly_with_a_journal_line(
    tmp_path: Path, entry: list[str], signum: int, code: int
) -> None:
    journal = tmp_path / "j.jsonl"
    cmd = [sys.executable, *entry, "--journal", str(journal), "--stream", "door"]
    cmd += ["--pub", "tcp://127.0.0.1:*", "--snapshot", "none"]
    child = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not _catches(child.pid, signal.SIGTERM):  # SIGTERM: Python itself catches only SIGINT
            assert child.poll() is None and time.monotonic() < deadline, "start-up handlers never came"
            time.sleep(0.005)
        child.send_signal(signum)
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()
    name = signal.Signals(signum).name
    assert child.returncode == code, err
    assert "Traceback" not in err and f"stopped during start-up ({name})" in err
    (line,) = journal.read_text().splitlines()
    msg = json.loads(line)
    assert (msg["kind"], msg["status"], msg["stream"]) == ("status", "source", "door")
    assert msg["detail"] == f"stopped during start-up ({name})"


def test_a_signal_during_runner_start_up_exits_with_128_plus_it(tmp_path: Path, capsys) -> None:
    """After the live handlers are in place, a signal before the first frame stops the same way."""
    import argparse
    import threading

    from engine.cli.live import add_live_arguments, run_live

    parser = argparse.ArgumentParser()
    add_live_arguments(parser)
    journal = tmp_path / "j.jsonl"
    args = parser.parse_args(["--journal", str(journal), "--pub", "tcp://127.0.0.1:*", "--snapshot", "none"])
    stop = threading.Event()
    stop.set()
    assert run_live(args, stop, [int(signal.SIGINT)]) == 130
    assert "stopped during start-up (SIGINT)" in capsys.readouterr().err
    details = [json.loads(line)["detail"] for line in journal.read_text().splitlines()]
    assert details == ["stopped during start-up (SIGINT)"]


def test_a_signal_that_a_c_extension_import_turns_into_an_import_error_still_exits_quietly(capsys) -> None:
    """NumPy's import wraps whatever stops its C extension in an ImportError: the signal counts."""
    import os

    from engine.startup import StartupInterrupted, startup_signals

    with pytest.raises(SystemExit) as stopped, startup_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises at the next bytecode
        except StartupInterrupted as exc:
            raise ImportError("Error importing numpy: PyCapsule_Import could not import module") from exc
    assert stopped.value.code == 143
    assert "stopped during start-up (SIGTERM)" in capsys.readouterr().err


def test_an_import_error_without_a_signal_is_not_taken_for_one() -> None:
    from engine.startup import startup_signals

    with pytest.raises(ImportError, match="no such module"), startup_signals():
        raise ImportError("no such module")


def _swallow_a_signal(signum: int) -> None:
    """A signal whose StartupInterrupted an import swallows (a bare ``except:``, say)."""
    import os

    from engine.startup import StartupInterrupted

    try:
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises at the next bytecode
    except StartupInterrupted:
        pass
    else:
        raise AssertionError("the start-up handler did not raise")


def test_a_signal_an_import_swallowed_is_handed_to_the_programs_stop() -> None:
    """The program's handlers take over a start-up signal nobody saw: its run stops at once."""
    import threading

    from engine.startup import startup_signals, stop_on_signals

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop, received = threading.Event(), []
    try:
        with startup_signals():
            _swallow_a_signal(signal.SIGTERM)
            stop_on_signals(stop, received)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert stop.is_set() and received == [signal.SIGTERM]


def test_a_signal_an_import_swallowed_still_ends_the_start_up(capsys) -> None:
    """A block that ends without handing the signal over exits as if it had come through."""
    from engine.startup import startup_signals

    with pytest.raises(SystemExit) as stopped, startup_signals():
        _swallow_a_signal(signal.SIGINT)
    assert stopped.value.code == 130
    assert "stopped during start-up (SIGINT)" in capsys.readouterr().err
    with startup_signals():  # handled once: the next start-up does not see it again
        pass
