"""Shared fixtures: the real test data folder and a real RTSP server (GStreamer, system python)."""

from __future__ import annotations

import functools
import json
import random
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# CI clones the repository with ../shared beside it.
SHARED_DATA = REPO.parent / "shared" / "data"
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER_SCRIPT = REPO / "tests" / "support" / "rtsp_server.py"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder (videos/, faces/); see its README.md."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (expected ../shared beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def videos(shared_data: Path) -> Path:
    """The folder of real test videos."""
    return shared_data / "videos"


@functools.cache
def gst_rtsp_problem() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None when it can."""
    check = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON} cannot run: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"{SYSTEM_PYTHON} lacks GstRtspServer (apt: python3-gi gir1.2-gst-rtsp-server-1.0): {last}"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_tcp_port() -> int:
    """A loopback TCP port with no listener (connections to it are refused)."""
    return free_port()


def _fuzzed_request(rng: random.Random, limit: int) -> list[bytes]:
    """One abusive request for a snapshot endpoint whose size limit is `limit` bytes: random
    bytes, deep nesting, an array over the limit, wrong frame counts, or an object of wrong types."""
    from stream.publish import TOPICS

    values = [None, True, 0, -1, 2**70, 1.5, "", "event", "x" * 300, [], {}, ["event"], {"a": 1}]
    pick = rng.randrange(6)
    if pick == 0:
        return [b"", rng.randbytes(rng.randrange(0, 2000))]
    if pick == 1:
        opener = rng.choice([b"[", b'{"a":'])
        return [b"", opener * rng.randrange(100, limit // len(opener))]
    if pick == 2:
        return [b"", b"[" + b"0," * rng.randrange(limit // 2, 6 * limit) + b"0]"]
    if pick == 3:
        return [rng.randbytes(rng.randrange(0, 20)) for _ in range(rng.choice([0, 2, 3, 7]))] or [b""]
    fields = {
        "kind": rng.choice(["snapshot_request", "command", *values]),
        "topic": rng.choice([*TOPICS, *values]),
        "since": rng.choice(values),
        "command": rng.choice(["neutral_restart", *values]),
        "request_id": rng.choice(values),
        "stream": rng.choice(["cam0", *values]),
        "session": rng.choice(values),
    }
    keep = {k: v for k, v in fields.items() if rng.random() < 0.8}
    return [b"", json.dumps(keep).encode()]


@pytest.fixture(scope="session")
def fuzzed_request() -> Callable[[random.Random, int], list[bytes]]:
    """Makes one abusive snapshot-endpoint request from a seeded generator and a size limit."""
    return _fuzzed_request


@pytest.fixture
def tcp_endpoint() -> Callable[[], str]:
    """Makes ZeroMQ endpoints on 127.0.0.1 with fixed, currently free ports (a process that is
    restarted binds the same ones again)."""
    return lambda: f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def looped_face(videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[float], Path]:
    """Makes a recording of a face of a given length: the real single-face clip played forward
    and backward (a face throughout, at its 30 fps), written once per length."""
    import cv2

    folder = tmp_path_factory.mktemp("looped")

    @functools.cache
    def make(seconds: float) -> Path:
        cap = cv2.VideoCapture(str(videos / "single_face.mp4"))
        fps = cap.get(cv2.CAP_PROP_FPS)
        frames = []
        while (got := cap.read())[0]:
            frames.append(got[1])
        cap.release()
        h, w = frames[0].shape[:2]
        out = folder / f"face_{seconds:g}s.mp4"
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        cycle = frames + frames[-2:0:-1]
        for k in range(int(seconds * fps)):
            writer.write(cycle[k % len(cycle)])
        writer.release()
        return out

    return make


class RtspServer:
    """Runs tests/support/rtsp_server.py in a subprocess; can be killed and restarted on its port."""

    def __init__(self, file: Path, port: int, cache: Path, log_dir: Path, loops: int = 20) -> None:
        self.file = file
        self.port = port
        self.cache = cache
        self.log_dir = log_dir
        self.loops = loops
        self.url = f"rtsp://127.0.0.1:{port}/clip"
        self.process: subprocess.Popen[str] | None = None
        self._starts = 0

    def start(self, timeout_s: float = 20.0) -> float:
        """Start the server; return time.monotonic() when it reported ready."""
        self._starts += 1
        log = (self.log_dir / f"rtsp_server.{self._starts}.log").open("w")
        cmd = [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), "--port", str(self.port), "--mount", "/clip"]
        cmd += ["--file", str(self.file), "--loops", str(self.loops), "--cache", str(self.cache)]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.process.stdout, selectors.EVENT_READ)
            if not sel.select(timeout_s):
                self.kill()
                raise RuntimeError(f"RTSP server not ready within {timeout_s} s; see {self.log_dir}")
        line = self.process.stdout.readline()
        if not line.startswith("ready"):
            self.kill()
            raise RuntimeError(f"RTSP server failed to start ({line!r}); see {self.log_dir}")
        return time.monotonic()

    def kill(self) -> None:
        """SIGKILL: the server vanishes as a crashed camera or a dropped link would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is sent (a stalled stream)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Terminate cleanly, or kill if that takes too long."""
        if self.process is None or self.process.poll() is not None:
            return
        self.resume()
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture(scope="session")
def rtsp_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the server keeps its looped copy of the clip (built once per session)."""
    return tmp_path_factory.mktemp("rtsp-cache")


@pytest.fixture
def rtsp_server(videos: Path, rtsp_cache: Path, tmp_path: Path) -> Iterator[RtspServer]:
    """A running RTSP server on a free loopback port serving single_face.mp4 looped (~48 s)."""
    problem = gst_rtsp_problem()
    if problem is not None:
        pytest.skip(problem)
    server = RtspServer(videos / "single_face.mp4", free_port(), rtsp_cache, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def slow_tail_video() -> tuple[list, dict]:
    """One 400-frame video, a 2 s MaE at frames 80-139 (snippets 20-34 of 4 frames), its scores
    0.9 over the MaE and then a tail falling slowly from 0.4 to 0.01 over 35 snippets."""
    import numpy as np

    from engine.data.features import VideoFeatures
    from engine.data.records import VideoRecord
    from stream.intervals import ExpressionType, Interval

    n = 100
    act = np.zeros(n)
    act[20:35] = 0.9
    act[35:70] = np.linspace(0.4, 0.01, 35)
    record = VideoRecord("v", "s1", 30.0, (Interval(80, 139, ExpressionType.MAE),), None, n * 4)
    empty = np.zeros((n, 1), np.float32)
    feats = VideoFeatures("v", empty, empty, np.ones(n, bool), 4 / 30, 30.0)
    return [(record, feats)], {"v": (np.stack([np.zeros(n), act], axis=1), act)}
