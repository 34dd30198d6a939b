"""The broker: many spotters behind one PUB and one snapshot endpoint (stream/broker.py).

In-process publishers for the routing rules; real `run_live.py` spotters on recordings behind
`mespot broker` for the whole story (a subscriber from the start, a late one, a spotter killed and
restarted, the journals). Everything on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import jsonschema
import pytest
import zmq

from stream.broker import Broker, SpotterEndpoints
from stream.errors import ConfigError
from stream.intervals import ExpressionType, Interval
from stream.listen import GapReport, Listener, Received, SessionChange
from stream.publish import Publisher

REPO = Path(__file__).resolve().parents[2]
ANY_PORT = "tcp://127.0.0.1:*"


def me(k: int) -> Interval:
    return Interval(20 * k, 20 * k + 9, ExpressionType.ME, apex=20 * k + 4, score=0.7)


def ask(endpoint: str, request: dict, timeout_s: float = 5.0) -> dict:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    try:
        sock.send_multipart([b"", json.dumps(request).encode()])
        assert sock.poll(int(timeout_s * 1000)), f"no reply to {request}"
        return json.loads(sock.recv_multipart()[-1])
    finally:
        sock.close(0)
        ctx.term()


def collect(listener: Listener, seconds: float) -> list:
    items, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        item = listener.recv(0.05)
        if item is not None:
            items.append(item)
    return items


def test_spotter_endpoints_parse() -> None:
    assert SpotterEndpoints.parse("tcp://a:1,tcp://a:2") == SpotterEndpoints("tcp://a:1", "tcp://a:2")
    assert SpotterEndpoints.parse("tcp://a:1") == SpotterEndpoints("tcp://a:1", None)
    for bad in ("", "tcp://a:1,", "a,b,c"):
        with pytest.raises(ConfigError, match="PUB or PUB,SNAPSHOT"):
            SpotterEndpoints.parse(bad)
    with pytest.raises(ConfigError, match="at least one spotter"):
        Broker([])


def test_streams_are_forwarded_routed_and_a_restart_is_picked_up(tcp_endpoint) -> None:
    schema = json.loads((REPO / "docs" / "events.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    ends = [(tcp_endpoint(), tcp_endpoint()) for _ in range(3)]
    pubs = [Publisher(f"cam{i}", pub, snap, heartbeat_s=0.25) for i, (pub, snap) in enumerate(ends)]
    broker = Broker([SpotterEndpoints(*e) for e in ends], ANY_PORT, ANY_PORT).start()
    try:
        for k in range(5):
            for p in pubs:
                p.publish_event(me(k), fps=30.0)
        time.sleep(0.8)  # heartbeats have told the broker which spotter owns which stream
        assert broker.owner == {"cam0": 0, "cam1": 1, "cam2": 2}
        # A late joiner gets every stream's past events through the broker.
        with Listener(broker.endpoint, broker.snapshot_endpoint, topics=("event", "status")) as late:
            items = collect(late, 2.0)
        events = {(i.stream, i.seq) for i in items if isinstance(i, Received) and i.kind == "event"}
        assert events == {(f"cam{i}", k) for i in range(3) for k in range(1, 6)}
        assert not [i for i in items if isinstance(i, GapReport) and i.lost]
        # Routing rules: a named stream goes to its spotter with the client's request id back.
        reply = ask(broker.snapshot_endpoint, {"kind": "snapshot_request", "stream": "cam2", "topic": "event",
                                               "since": 3, "request_id": "mine"})  # fmt: skip
        validator.validate(reply)
        assert reply["stream"] == "cam2" and reply["request_id"] == "mine"
        assert [m["seq"] for m in reply["messages"]] == [4, 5] and reply["session"] == pubs[2].session
        for request, error in (
            ({"kind": "snapshot_request", "topic": "event", "since": 0}, "name the stream"),
            (
                {"kind": "snapshot_request", "stream": "cam9", "topic": "event", "since": 0},
                "no spotter has sent",
            ),
            (
                {"kind": "command", "command": "neutral_restart", "stream": "cam0"},
                "does not forward commands",
            ),
            (
                {"kind": "snapshot_request", "stream": "cam0", "topic": "nope", "since": 0},
                "topic must be one of",
            ),
        ):
            reply = ask(broker.snapshot_endpoint, request)
            validator.validate(reply)
            assert error in reply["error"], (request, reply)
        # A spotter that stops and starts again on its endpoints: a subscriber sees the new session.
        with Listener(broker.endpoint, broker.snapshot_endpoint, topics=("event", "status")) as sub:
            collect(sub, 0.5)
            pubs[1].close()
            pubs[1] = Publisher("cam1", *ends[1], heartbeat_s=0.25)
            time.sleep(0.5)
            pubs[1].publish_event(me(9), fps=30.0)
            items = collect(sub, 2.0)
        changes = [i for i in items if isinstance(i, SessionChange) and i.stream == "cam1"]
        assert changes and changes[-1].new == pubs[1].session
        new = [i for i in items if isinstance(i, Received) and i.kind == "event" and i.stream == "cam1"]
        assert [(i.message["session"], i.seq) for i in new] == [(pubs[1].session, 1)]
    finally:
        broker.close()
        for p in pubs:
            p.close()


# ------------------------------------------------------------------------------------------
# Three real spotters on recordings behind `mespot broker`
# ------------------------------------------------------------------------------------------


def spotter(clip: Path, stream: str, pub: str, snap: str, journal: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "run_live.py"), "--source", str(clip), "--realtime", "--stream", stream,
         "--journal", str(journal), "--pub", pub, "--snapshot", snap, "--linger", "4", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def journal_by_session(path: Path) -> dict[str, set[tuple[str, int]]]:
    out: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for line in path.read_text().splitlines():
        m = json.loads(line)
        out[m["session"]].add((m["kind"], m["seq"]))
    return out


class Subscriber:
    """A Listener on the broker in a thread: what it received, per stream and session."""

    def __init__(self, pub: str, snap: str) -> None:
        self.listener = Listener(pub, snap, topics=("event", "status"), catch_up=("event", "status"),
                                 snapshot_timeout_s=5.0)  # fmt: skip
        self.got: dict[tuple[str, str], set[tuple[str, int]]] = defaultdict(set)
        self.beats: dict[str, int] = defaultdict(int)
        self.lost: list[GapReport] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.listener.recv(0.05)
            if isinstance(item, Received):
                if item.message.get("status") == "heartbeat":
                    self.beats[item.stream] += 1
                else:
                    self.got[(item.stream, item.message["session"])].add((item.kind, item.seq))
            elif isinstance(item, GapReport) and item.lost:
                self.lost.append(item)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10.0)
        self.listener.close()


@pytest.mark.timeout(240)
def test_three_spotters_behind_a_broker_one_killed_and_restarted(
    tmp_path: Path, looped_face, tcp_endpoint
) -> None:
    clip = looped_face(8.0)
    streams = ["cam0", "cam1", "cam2"]
    ends = {s: (tcp_endpoint(), tcp_endpoint()) for s in streams}
    journals = {s: tmp_path / f"{s}.jsonl" for s in streams}
    bpub, bsnap = tcp_endpoint(), tcp_endpoint()
    broker = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "broker", "--pub", bpub, "--snapshot", bsnap,
         *[arg for s in streams for arg in ("--spotter", ",".join(ends[s]))]],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    procs = {s: spotter(clip, s, *ends[s], journals[s]) for s in streams}
    early = Subscriber(bpub, bsnap)
    late = None
    outputs: dict[str, str] = {}
    try:
        # cam1 is killed once it has journaled its first event, then started again.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if journals["cam1"].exists() and '"kind":"event"' in journals["cam1"].read_text():
                break
            time.sleep(0.2)
        else:
            pytest.fail("cam1 journaled no event within 120 s")
        procs["cam1"].send_signal(signal.SIGKILL)
        procs["cam1"].wait(10)
        killed_session = next(iter(journal_by_session(journals["cam1"])))
        procs["cam1"] = spotter(clip, "cam1", *ends["cam1"], journals["cam1"])
        time.sleep(4.0)
        late = Subscriber(bpub, bsnap)  # joins while the spotters run or linger
        for s, p in procs.items():
            outputs[s] = p.communicate(timeout=120)[0]
            assert p.returncode == 0, (s, outputs[s])
        time.sleep(0.5)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        early.close()
        if late is not None:
            late.close()
        broker.send_signal(signal.SIGTERM)
        broker_out = broker.communicate(timeout=20)[0]
    assert broker.returncode == 0, broker_out
    assert "messages forwarded from streams ['cam0', 'cam1', 'cam2']" in broker_out, broker_out
    # Every stream's heartbeats reached the subscriber through the one endpoint.
    assert all(early.beats[s] >= 3 for s in streams), dict(early.beats)
    # Nothing lost, per the journals: the subscriber holds exactly what each journal holds, except
    # that the last messages journaled by the killed spotter may have died with it before they left
    # the process (ZeroMQ sends from its own I/O thread): only a tail of each topic, never a gap.
    for s in streams:
        for session, journaled in journal_by_session(journals[s]).items():
            received = early.got[(s, session)]
            if session == killed_session:
                lost = journaled - received
                assert received <= journaled, (s, received - journaled)
                for kind in {k for k, _ in lost}:
                    kept = [seq for k, seq in received if k == kind]
                    assert not kept or max(kept) < min(seq for k, seq in lost if k == kind), (s, sorted(lost))
            else:
                assert received == journaled, (s, session, sorted(journaled ^ received))
                # The late subscriber recovered the current sessions' events through the broker.
                events = {m for m in journaled if m[0] == "event"}
                assert {m for m in late.got[(s, session)] if m[0] == "event"} == events, s
    assert sum(m[0] == "event" for got in early.got.values() for m in got) >= 3
    assert not [g for g in early.lost if g.session != killed_session], early.lost
