"""A real spotter under abuse: `run_live.py` on a paced recording, with the snapshot endpoint
flooded, fuzzed and sent oversized requests while it runs.

The requests are the ones that once stopped or starved it (a 1,000-deep nested array, 2,000
unread snapshot requests, a 50 MB array) and a seeded fuzzer. Afterwards: heartbeats kept their
cadence, no frame was dropped, memory stayed bounded, the run ended with exit 0, and its journal
holds exactly the events and status events a subscriber received. Everything on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from stream.listen import Listener, Received

REPO = Path(__file__).resolve().parents[2]
CLIP_S = 14.0  # long enough for the abuse to happen while it plays, paced in real time
MAX_REQUEST_BYTES = 65_536  # the spotter's default request size limit
RSS_GROWTH_LIMIT_MB = 120  # a flood used to add 340 MB, a 50 MB request 300 MB


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Collector:
    """A subscriber (with snapshot recovery) in a thread, and the spotter's memory meanwhile."""

    def __init__(self, pub: str, snapshot: str, pid: int) -> None:
        self.listener = Listener(
            pub, snapshot, topics=("event", "status"), catch_up=("event", "status"), snapshot_timeout_s=5.0
        )
        self.pid = pid
        self.messages: list[dict] = []
        self.beats: list[float] = []
        self.gaps: list = []
        self.rss: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-collector")
        self._thread.start()

    def _run(self) -> None:
        last_rss = 0.0
        while not self._stop.is_set():
            item = self.listener.recv(0.05)
            if isinstance(item, Received):
                if item.message.get("status") == "heartbeat":
                    if not item.recovered:
                        self.beats.append(time.monotonic())
                else:
                    self.messages.append(item.message)
            elif item is not None and hasattr(item, "lost"):
                self.gaps.append(item)
            if time.monotonic() - last_rss > 0.1:
                last_rss = time.monotonic()
                with contextlib.suppress(OSError, RuntimeError):
                    self.rss.append(rss_mb(self.pid))

    def wait_beats(self, n: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.beats) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.beats) >= n, f"{len(self.beats)} heartbeats in {timeout_s} s"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10.0)
        self.listener.close()


def abuse(snapshot: str, seconds: float, fuzzed_request, seed: int = 7) -> int:
    """The table's requests, then a seeded fuzzer for `seconds`; returns how many were sent."""
    rng = random.Random(seed)
    ctx = zmq.Context()
    socks = []
    try:

        def dealer() -> zmq.Socket:
            s = ctx.socket(zmq.DEALER)
            s.linger = 0
            s.sndhwm = 0
            s.connect(snapshot)
            socks.append(s)
            return s

        sent = 0
        d = dealer()
        d.send_multipart([b"", b"[" * 1000])
        flood = json.dumps({"kind": "snapshot_request", "topic": "status", "since": 0}).encode()
        for _ in range(2000):  # never read
            d.send_multipart([b"", flood])
        dealer().send_multipart([b"", b"[" + b"0," * 25_000_000 + b"0]"])  # 50 MB
        sent += 2002
        fuzz = [dealer() for _ in range(3)]
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            frames = fuzzed_request(rng, MAX_REQUEST_BYTES)
            with contextlib.suppress(zmq.Again):
                rng.choice(fuzz).send_multipart(frames, zmq.NOBLOCK)
                sent += 1
            for s in fuzz:  # read what comes back, as a client would
                while s.poll(0):
                    s.recv_multipart()
            time.sleep(0.002)  # a busy client, not a tight loop that takes a core from the spotter
        return sent
    finally:
        for s in socks:
            s.close(0)
        ctx.term()


@pytest.mark.timeout(150)
def test_a_spotter_under_abuse_keeps_its_cadence_frames_memory_and_journal(
    tmp_path: Path, looped_face, tcp_endpoint, fuzzed_request
) -> None:
    clip = looped_face(CLIP_S)
    journal = tmp_path / "journal.jsonl"
    pub, snap = tcp_endpoint(), tcp_endpoint()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "run_live.py"), "--source", str(clip), "--realtime",
         "--journal", str(journal), "--pub", pub, "--snapshot", snap, "--linger", "1.5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    collector = Collector(pub, snap, proc.pid)
    try:
        collector.wait_beats(2, timeout_s=60.0)  # started: imports, model, first frames
        base = max(collector.rss[-5:])
        sent = abuse(snap, 4.0, fuzzed_request)
        output, _ = proc.communicate(timeout=90)
        time.sleep(0.3)  # the linger's last messages
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        collector.close()
    assert proc.returncode == 0, output
    assert "W0000" not in output and "XNNPACK" not in output  # the tracker's native logs, quieted
    assert sent > 2500
    summary = next(line for line in output.splitlines() if ": end of stream;" in line)
    assert "dropped 0," in summary, summary
    gaps = [b - a for a, b in zip(collector.beats, collector.beats[1:], strict=False)]
    assert len(gaps) >= 8 and max(gaps) < 1.5, gaps  # the cadence is 1 s
    growth = max(collector.rss) - base
    assert growth < RSS_GROWTH_LIMIT_MB, (base, max(collector.rss))
    # The journal is what was published: every event and status event, nothing else.
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    journaled = {(m["kind"], m["seq"]) for m in lines}
    received = {(m["kind"], m["seq"]) for m in collector.messages}
    assert not [g for g in collector.gaps if g.lost], collector.gaps
    assert journaled == received, (sorted(journaled ^ received), output)
    assert any(m["kind"] == "status" and "requests dropped" in m.get("detail", "") for m in lines)
