"""The ZeroMQ publisher: real sockets on loopback ports picked by the kernel, no mocks."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import zmq

from engine.online import OnlineSpotter
from engine.proposals import ProposalConfig
from stream.errors import ConfigError
from stream.intervals import ExpressionType, Interval
from stream.listen import Listener, Received
from stream.publish import (
    SCHEMA,
    CurveClient,
    CurveServer,
    Publisher,
    PublishError,
    topic_of,
)

pytestmark = pytest.mark.usefixtures("no_leaked_threads")

REPO = Path(__file__).resolve().parents[2]
ANY_PORT = "tcp://127.0.0.1:*"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((REPO / "docs" / "events.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def subscriber(ctx: zmq.Context, pub: Publisher, prefix: bytes = b"mespot.") -> zmq.Socket:
    """A SUB socket (on `prefix` and the status topic) that has provably joined: a heartbeat came."""
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.subscribe(prefix)
    sub.subscribe(topic_of(pub.stream, "status"))
    sub.connect(pub.endpoint)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if sub.poll(200):
            _, data = sub.recv_multipart()
            if json.loads(data).get("status") == "heartbeat":
                return sub
    raise AssertionError("the subscriber never joined")


def receive(sub: zmq.Socket, until, timeout_s: float = 5.0) -> list[tuple[bytes, dict]]:
    """Receive until `until(messages)` holds."""
    got: list[tuple[bytes, dict]] = []
    deadline = time.monotonic() + timeout_s
    while not until(got) and time.monotonic() < deadline:
        if sub.poll(100):
            topic, data = sub.recv_multipart()
            got.append((topic, json.loads(data)))
    return got


def me(onset: int, score: float = 0.7) -> Interval:
    return Interval(onset, onset + 9, ExpressionType.ME, apex=onset + 4, score=score)


def test_subscriber_gets_every_message_in_order_and_valid(ctx: zmq.Context, validator, tmp_path) -> None:
    with Publisher("cam0", ANY_PORT, ANY_PORT, journal=tmp_path / "j.jsonl") as pub:
        assert pub.endpoint.startswith("tcp://127.0.0.1:") and not pub.endpoint.endswith("*")
        sub = subscriber(ctx, pub)
        sent = []
        for k in range(20):
            sent.append(pub.publish_event(me(30 * k), fps=30.0, capture_ns=time.monotonic_ns()))
            sent.append(pub.publish_scores(k, [0.1 * (k % 10), np.nan], 0.5, start_s=k * 0.27, end_s=0.3))
            if k % 5 == 0:
                sent.append(pub.publish_status("face_lost", frame_index=k, media_time_s=k / 30, detail="x"))
        got = receive(sub, lambda g: sum(m["kind"] in ("event", "score") for _, m in g) >= 40)
    by_topic: dict[str, list[int]] = {}
    for topic, msg in got:
        validator.validate(msg)
        assert topic == topic_of("cam0", msg["kind"])
        assert msg["schema"] == SCHEMA and msg["session"] == pub.session
        by_topic.setdefault(msg["kind"], []).append(msg["seq"])
    assert by_topic["event"] == list(range(1, 21))
    assert by_topic["score"] == list(range(1, 21))
    status = by_topic["status"]  # heartbeats and status events share the status counter
    assert status == sorted(status) and len(set(status)) == len(status)
    events = [m for _, m in got if m["kind"] == "event"]
    assert events == [m for m in sent if m["kind"] == "event"]  # returned == sent
    first = events[0]
    assert [first[k] for k in ("onset_frame", "offset_frame", "apex_frame", "type")] == [0, 9, 4, "me"]
    assert first["duration_s"] == pytest.approx(10 / 30) and first["offset_s"] == pytest.approx(9 / 30)
    assert 0 <= first["latency_s"] < 5.0
    score = next(m for _, m in got if m["kind"] == "score")
    assert score["mae"] is None and score["snippet"] == 0  # NaN travels as null


def test_heartbeat_at_least_once_a_second_with_health(ctx: zmq.Context, validator) -> None:
    with Publisher("cam1", ANY_PORT, None, heartbeat_s=1.0) as pub:
        sub = subscriber(ctx, pub, topic_of("cam1", "status"))
        pub.set_health(fps=29.5, drops=3, face=True, latency_s=0.12)
        pub.publish_event(me(0), fps=30.0)
        start = time.monotonic()
        got = receive(sub, lambda g: False, timeout_s=2.2)
        elapsed = time.monotonic() - start
    beats = [m for _, m in got if m["status"] == "heartbeat"]
    assert len(beats) >= 2 and elapsed < 4.0  # >= 1 Hz, loosely
    for m in beats:
        validator.validate(m)
    last = beats[-1]
    assert (last["fps"], last["drops"], last["face"], last["latency_s"]) == (29.5, 3, True, 0.12)
    assert last["heads"] == {"event": 1, "score": 0, "status": last["seq"]}


def test_status_events_from_pipeline_objects(ctx: zmq.Context, validator) -> None:
    from stream.frame import StatusEvent, StatusKind

    with Publisher("cam0", ANY_PORT, None) as pub:
        sub = subscriber(ctx, pub)
        for kind in StatusKind:
            pub.publish_status_event(StatusEvent(kind, 42, 1.4, time.monotonic_ns(), detail=f"{kind} here"))
        got = receive(sub, lambda g: sum(m.get("status") != "heartbeat" for _, m in g) >= len(StatusKind))
        with pytest.raises(ConfigError, match="status kind"):
            pub.publish_status("heartbeat")
    statuses = [m for _, m in got if m.get("status") != "heartbeat"]
    assert [m["status"] for m in statuses] == [k.value for k in StatusKind]
    for m in statuses:
        validator.validate(m)
        assert (m["frame_index"], m["media_time_s"]) == (42, 1.4)


def test_journal_lines_equal_published_events(ctx: zmq.Context, tmp_path: Path) -> None:
    path = tmp_path / "journal" / "cam0.jsonl"
    with Publisher("cam0", ANY_PORT, None, journal=path) as pub:
        sub = subscriber(ctx, pub)
        for k in range(5):
            pub.publish_event(me(20 * k), fps=30.0)
            pub.publish_scores(k, [0.2, 0.3], 0.3)
        pub.publish_status("time_gap", frame_index=77, media_time_s=2.5, detail="0.5 s without frames")
        got = receive(sub, lambda g: sum(m.get("status") == "time_gap" for _, m in g) == 1)
        # Flushed per line: the lines are there before close.
        assert pub.flush()
        assert len(path.read_text().splitlines()) == 6
    wire = [m for _, m in got if m["kind"] == "event" or m.get("status") == "time_gap"]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == wire  # events and status events; no scores, no heartbeats
    # A second session appends; its lines carry its own session id.
    with Publisher("cam0", ANY_PORT, None, journal=path) as pub2:
        pub2.publish_event(me(500), fps=30.0)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 7 and lines[-1]["session"] == pub2.session != pub.session


def test_snapshot_endpoint_answers_since(ctx: zmq.Context, validator) -> None:
    with Publisher("cam0", ANY_PORT, ANY_PORT, history=4) as pub:
        for k in range(6):
            pub.publish_event(me(20 * k), fps=30.0)
        req = ctx.socket(zmq.REQ)
        req.linger = 0
        req.connect(pub.snapshot_endpoint)

        def ask(**request) -> dict:
            req.send_json(request)
            assert req.poll(5000), "no snapshot reply"
            reply = req.recv_json()
            validator.validate(reply)
            return reply

        base = {"schema": SCHEMA, "kind": "snapshot_request", "topic": "event"}
        validator.validate({**base, "since": 0, "request_id": 1, "stream": "cam0", "session": pub.session})
        reply = ask(**base, since=3, request_id="a")
        assert reply["request_id"] == "a" and reply["session"] == pub.session
        assert [m["seq"] for m in reply["messages"]] == [4, 5, 6]
        assert (reply["oldest"], reply["head"], reply["complete"]) == (3, 6, True)
        reply = ask(**base, since=0)  # 1 and 2 have left the history of 4
        assert [m["seq"] for m in reply["messages"]] == [3, 4, 5, 6] and reply["complete"] is False
        assert ask(**base, since=6)["messages"] == []
        # A session the endpoint does not know: everything of this one.
        assert len(ask(**base, since=5, session="0" * 32)["messages"]) == 4
        # Bad requests get an error, not silence.
        assert "topic" in ask(kind="snapshot_request", topic="nope", since=0)["error"]
        assert "since" in ask(kind="snapshot_request", topic="event", since=-1)["error"]
        assert "serves stream" in ask(**base, since=0, stream="other")["error"]
        req.send(b"not json")
        assert "bad request" in req.recv_json()["error"]


def test_bind_conflict_closed_publisher_and_bad_arguments() -> None:
    with Publisher("cam0", ANY_PORT, None) as pub, pytest.raises(PublishError, match="cannot bind"):
        Publisher("cam0", pub.endpoint, None)
    with pytest.raises(PublishError, match="closed"):
        pub.publish_event(me(0), fps=30.0)
    pub.close()  # twice is fine
    with pytest.raises(ConfigError, match="stream name"):
        Publisher("cam.0", ANY_PORT, None)
    with pytest.raises(ConfigError, match="heartbeat_s"):
        Publisher("cam0", ANY_PORT, None, heartbeat_s=2.0)
    with pytest.raises(PublishError, match="journal"):
        Publisher("cam0", ANY_PORT, None, journal="/proc/no/such/dir/j.jsonl")


def test_score_rate_limit(ctx: zmq.Context) -> None:
    with Publisher("cam0", ANY_PORT, None, score_rate_hz=2.0) as pub:
        sent = [pub.publish_scores(k, [0.1, 0.2], 0.2) for k in range(50)]
    kept = [m for m in sent if m is not None]
    assert 1 <= len(kept) <= 3 and [m["seq"] for m in kept] == list(range(1, len(kept) + 1))


def test_close_is_clean_and_sends_what_was_queued(ctx: zmq.Context) -> None:
    pub = Publisher("cam0", ANY_PORT, ANY_PORT, linger_ms=200)
    sub = subscriber(ctx, pub, topic_of("cam0", "event"))
    for k in range(200):
        pub.publish_event(me(k * 10), fps=30.0)
    start = time.monotonic()
    pub.close()
    assert time.monotonic() - start < 3.0
    got = receive(sub, lambda g: sum(m["kind"] == "event" for _, m in g) >= 200)
    assert [m["seq"] for _, m in got if m["kind"] == "event"] == list(range(1, 201))
    assert not any(t.name.startswith("mespot-publish") for t in threading.enumerate())


def test_online_spotter_to_listener() -> None:
    """The live chain's end: OnlineSpotter output published, received by a Listener."""
    act = np.zeros(80)
    act[10] = 0.9
    act[40:45] = 0.8
    cls = np.stack([act, act / 2], axis=1)
    spotter = OnlineSpotter(ProposalConfig(), 8 / 30, 30.0)
    with Publisher("cam0", ANY_PORT, ANY_PORT) as pub:
        for j in range(80):
            for spotted in spotter.push(j, cls[j], act[j], capture_ns=time.monotonic_ns()):
                pub.publish_event(spotted, fps=30.0)
        with Listener(pub.endpoint, pub.snapshot_endpoint, topics=["event"]) as listener:
            events = []
            deadline = time.monotonic() + 5
            while len(events) < 2 and time.monotonic() < deadline:
                item = listener.recv(0.5)
                if isinstance(item, Received):
                    events.append(item.message)
    assert [(m["snippet_start"], m["snippet_end"]) for m in events] == [(10, 11), (40, 45)]
    assert [m["type"] for m in events] == ["me", "mae"]
    assert all(m["latency_s"] is not None and m["finalised_snippet"] >= m["snippet_end"] for m in events)


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE (no libsodium)")
def test_curve_round_trip(tmp_path: Path) -> None:
    import zmq.auth

    server_pub, server_sec = zmq.curve_keypair()
    client_pub, client_sec = zmq.curve_keypair()
    stranger_pub, stranger_sec = zmq.curve_keypair()
    curve = CurveServer(server_pub, server_sec, client_keys=(client_pub,))
    with Publisher("cam0", ANY_PORT, ANY_PORT, curve=curve) as pub:
        for k in range(3):
            pub.publish_event(me(20 * k), fps=30.0)
        # An allowed client: the snapshot (catch-up) and the live stream both work, encrypted.
        with Listener(
            pub.endpoint,
            pub.snapshot_endpoint,
            topics=["event"],
            curve=CurveClient(server_pub, client_pub, client_sec),
        ) as listener:
            pub.publish_event(me(100), fps=30.0)
            seqs = []
            deadline = time.monotonic() + 5
            while len(seqs) < 4 and time.monotonic() < deadline:
                item = listener.recv(0.5)
                if isinstance(item, Received):
                    seqs.append(item.seq)
        assert seqs == [1, 2, 3, 4]
        # A client whose key is not allowed, and a plain one, get nothing.
        with Listener(
            pub.endpoint,
            pub.snapshot_endpoint,
            topics=["event", "status"],
            curve=CurveClient(server_pub, stranger_pub, stranger_sec),
            snapshot_timeout_s=0.5,
        ) as stranger:
            assert stranger.recv(1.0) is None
        with Listener(pub.endpoint, None, topics=["status"]) as plain:
            assert plain.recv(0.5) is None
    # Keys from certificate files (zmq.auth.create_certificates).
    server_secret = Path(zmq.auth.create_certificates(tmp_path, "server")[1])
    clients = tmp_path / "clients"
    clients.mkdir()
    _, client_secret = zmq.auth.create_certificates(clients, "client")
    (tmp_path / "client.key_secret").write_bytes(Path(client_secret).read_bytes())
    Path(client_secret).unlink()
    with Publisher("cam0", ANY_PORT, None, curve=CurveServer.from_files(server_secret, clients)) as pub:
        keys = CurveClient.from_files(tmp_path / "server.key", tmp_path / "client.key_secret")
        with Listener(pub.endpoint, None, topics=["status"], curve=keys) as listener:
            item = listener.recv(5.0)
            while item is not None and not isinstance(item, Received):
                item = listener.recv(5.0)
            assert isinstance(item, Received) and item.message["status"] == "heartbeat"


def test_commands_on_the_snapshot_endpoint(ctx: zmq.Context, validator) -> None:
    from stream.listen import send_command

    calls: list[str] = []
    flag = threading.Event()

    def restart() -> str:
        calls.append(threading.current_thread().name)
        flag.set()
        return "collecting afresh"

    with Publisher("cam0", ANY_PORT, ANY_PORT, allow_local_commands=True) as pub:
        with pytest.raises(ConfigError, match="command name"):
            pub.on_command("bad name", restart)
        pub.on_command("neutral_restart", restart)
        pub.on_command("broken", lambda: 1 / 0)
        assert pub.commands == ["broken", "neutral_restart"]
        pub.publish_event(me(0), fps=30.0)
        request = {"schema": SCHEMA, "kind": "command", "command": "neutral_restart", "request_id": 3}
        validator.validate(request)
        req = ctx.socket(zmq.REQ)
        req.linger = 0
        req.connect(pub.snapshot_endpoint)
        req.send_json(request)
        assert req.poll(5000), "no command reply"
        reply = req.recv_json()
        validator.validate(reply)
        assert reply == {
            "schema": SCHEMA,
            "kind": "command_reply",
            "stream": "cam0",
            "session": pub.session,
            "command": "neutral_restart",
            "request_id": 3,
            "ok": True,
            "detail": "collecting afresh",
            "error": None,
        }
        assert flag.is_set() and calls == [f"mespot-publish-{pub.stream}"]  # once, on the I/O thread
        # Unknown commands, other streams and failing callbacks are refused, naming why.
        unknown = send_command(pub.snapshot_endpoint, "reboot", timeout_s=5.0)
        validator.validate(unknown)
        assert unknown["ok"] is False and unknown["detail"] == ""
        assert (
            "unknown command 'reboot'" in unknown["error"] and "broken, neutral_restart" in unknown["error"]
        )
        other = send_command(pub.snapshot_endpoint, "neutral_restart", stream="cam1")
        assert other["ok"] is False and "serves stream" in other["error"]
        broken = send_command(pub.snapshot_endpoint, "broken")
        validator.validate(broken)
        assert broken["ok"] is False and "ZeroDivisionError" in broken["error"]
        assert len(calls) == 1
        # The snapshot protocol is unchanged beside it.
        req.send_json({"kind": "snapshot_request", "topic": "event", "since": 0})
        assert req.poll(5000)
        snap = req.recv_json()
        validator.validate(snap)
        assert snap["kind"] == "snapshot" and [m["seq"] for m in snap["messages"]] == [1]
    # No reply (nothing listening): TimeoutError.
    with pytest.raises(TimeoutError, match="did not answer"):
        send_command("tcp://127.0.0.1:9", "neutral_restart", timeout_s=0.3)


# ------------------------------------------------------------------------------------------
# Abuse of the snapshot endpoint: every request gets a reply or nothing, never a stopped thread
# ------------------------------------------------------------------------------------------


class Beats:
    """Collects the heartbeats of a publisher on a SUB socket in a thread (their arrival times)."""

    def __init__(self, pub: Publisher) -> None:
        self.ctx = zmq.Context()
        self.sub = subscriber(self.ctx, pub, topic_of(pub.stream, "status"))
        self.times: list[float] = []
        self.statuses: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-beats")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.sub.poll(50):
                msg = json.loads(self.sub.recv_multipart()[1])
                if msg["status"] == "heartbeat":
                    self.times.append(time.monotonic())
                else:
                    self.statuses.append(msg)

    def max_gap(self) -> float:
        return max(b - a for a, b in zip(self.times, self.times[1:], strict=False))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.sub.close(0)
        self.ctx.term()


def dealer(ctx: zmq.Context, pub: Publisher) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(pub.snapshot_endpoint)
    return sock


def ask_raw(sock: zmq.Socket, *frames: bytes, timeout_s: float = 5.0) -> dict:
    sock.send_multipart(list(frames))
    assert sock.poll(int(timeout_s * 1000)), f"no reply to {[f[:40] for f in frames]}"
    return json.loads(sock.recv_multipart()[-1])


def test_deep_nesting_wrong_types_and_frame_counts_get_error_replies(ctx: zmq.Context, validator) -> None:
    with Publisher("cam0", ANY_PORT, ANY_PORT, heartbeat_s=0.25) as pub:
        pub.publish_event(me(0), fps=30.0)
        sock = dealer(ctx, pub)
        # What killed the I/O thread before: 1,000 (and 60,000) nested arrays.
        for depth in (1000, 60_000):
            reply = ask_raw(sock, b"", b"[" * depth)
            validator.validate(reply)
            assert reply["kind"] == "snapshot" and "nested too deeply" in reply["error"]
        bad = [
            b"\xff\xfe not utf-8",
            b'{"kind": "snapshot_request", "topic": ["event"], "since": 0}',
            b'{"kind": "snapshot_request", "topic": "event", "since": "0"}',
            b'{"kind": "snapshot_request", "topic": "event", "since": 0, "stream": {"a": [1]}}',
            b'{"kind": "command", "command": [1, 2], "request_id": {"x": 1}}',
            b'{"kind": 5}',
            b"[]",
            b"null",
        ]
        for payload in bad:
            reply = ask_raw(sock, b"", payload)
            validator.validate(reply)
            assert reply["error"], payload
        # Wrong frame counts: none, three; a REQ client's extra frames.
        for frames in ([b""], [b"", b"{}", b"{}", b"{}"], [b"x", b"y"]):
            reply = ask_raw(sock, *frames)
            validator.validate(reply)
            assert "frames" in reply["error"], frames
        # The endpoint still serves, and the thread still publishes.
        good = ask_raw(
            sock, b"", json.dumps({"kind": "snapshot_request", "topic": "event", "since": 0}).encode()
        )
        assert good["error"] is None and [m["seq"] for m in good["messages"]] == [1]
        assert pub.publish_event(me(40), fps=30.0)["seq"] == 2
        assert pub.flush(2.0)


def test_a_request_over_the_size_limit_is_refused_naming_the_limit(ctx: zmq.Context, validator) -> None:
    with Publisher("cam0", ANY_PORT, ANY_PORT, heartbeat_s=0.25, max_request_bytes=4096) as pub:
        beats = Beats(pub)
        try:
            sock = dealer(ctx, pub)
            reply = ask_raw(sock, b"", b"[" + b"1," * 5000 + b"1]")
            validator.validate(reply)
            assert "over the limit of 4096 bytes" in reply["error"] and "max_request_bytes" in reply["error"]
            # 50 MB: ZeroMQ drops the connection before reading it (over 4x the limit), no stall.
            t0 = time.monotonic()
            sock.send_multipart([b"", b"[" + b"0," * 25_000_000 + b"0]"])
            assert not sock.poll(1500)
            time.sleep(0.5)
            late = dealer(ctx, pub)  # a new client is served at once
            reply = ask_raw(late, b"", b'{"kind": "snapshot_request", "topic": "status", "since": 0}')
            assert reply["error"] is None and reply["head"] >= 1
            assert time.monotonic() - t0 < 4.0
        finally:
            beats.close()
        assert beats.max_gap() < 1.0, beats.times


def test_a_flood_of_unread_snapshot_requests_never_starves_publishing(ctx: zmq.Context) -> None:
    """2,000 unread requests for 1,024 scores each: heartbeats keep their cadence, scores go out
    at once, the oldest requests are dropped and counted on the status topic."""
    with Publisher("cam0", ANY_PORT, ANY_PORT, heartbeat_s=0.25) as pub:
        for k in range(1100):
            pub.publish_scores(k, [0.1, 0.2], 0.3)
        assert pub.flush(5.0)
        scores = subscriber(ctx, pub, topic_of("cam0", "score"))
        beats = Beats(pub)
        try:
            flood = dealer(ctx, pub)
            flood.sndhwm = 0  # no client-side limit: every request reaches the endpoint's queue
            request = json.dumps({"kind": "snapshot_request", "topic": "score", "since": 0}).encode()
            for _ in range(2000):
                flood.send_multipart([b"", request])
            late = []
            t0 = time.monotonic()
            while time.monotonic() - t0 < 3.0:
                sent = time.monotonic()
                pub.publish_scores(2000 + len(late), [0.1, 0.2], 0.3)
                got = receive(scores, lambda g: any(t.endswith(b".score") for t, _ in g), timeout_s=2.0)
                assert got, "a score was not sent within 2 s"
                late.append(time.monotonic() - sent)
                time.sleep(0.05)
        finally:
            beats.close()
        assert beats.max_gap() < 1.0, beats.times
        assert max(late) < 0.5, late
        assert pub.dropped_requests > 0
        drops = [m for m in beats.statuses if "requests dropped" in m["detail"]]
        assert drops and drops[0]["status"] == "source"


def test_snapshots_are_paged_and_the_listener_follows_the_pages() -> None:
    with Publisher("cam0", ANY_PORT, ANY_PORT, history=1024, snapshot_max_messages=100) as pub:
        for k in range(700):
            pub.publish_event(me(20 * k), fps=30.0)
        assert pub.flush(5.0)
        with Listener(pub.endpoint, pub.snapshot_endpoint, topics=["event"]) as listener:
            seqs = []
            deadline = time.monotonic() + 10
            while len(seqs) < 700 and time.monotonic() < deadline:
                item = listener.recv(0.5)
                if isinstance(item, Received):
                    seqs.append(item.seq)
        assert seqs == list(range(1, 701))


def test_seeded_fuzzer_cannot_stop_the_endpoint(ctx: zmq.Context, validator, fuzzed_request) -> None:
    """Random bytes, deep nesting, huge frames, wrong frame counts and wrong types for 3 s."""
    import random

    rng = random.Random(13)
    limit = 8192
    with Publisher("cam0", ANY_PORT, ANY_PORT, heartbeat_s=0.25, max_request_bytes=limit) as pub:
        pub.publish_event(me(0), fps=30.0)
        beats = Beats(pub)

        def request() -> list[bytes]:
            return fuzzed_request(rng, limit)

        socks = [dealer(ctx, pub) for _ in range(4)]
        sent = replies = 0
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 3.0:
                sock = rng.choice(socks)
                with contextlib.suppress(zmq.Again):
                    sock.send_multipart(request(), zmq.NOBLOCK)
                    sent += 1
                for s in socks:
                    while s.poll(0):
                        reply = json.loads(s.recv_multipart()[-1])
                        validator.validate(reply)
                        assert reply["error"] or reply["kind"] in ("snapshot", "command_reply")
                        replies += 1
                if sent % 50 == 0:
                    pub.publish_event(me(20 * sent), fps=30.0)
            # On a loaded machine the replies may trail the requests: collect them (bounded).
            deadline = time.monotonic() + 10.0
            while replies == 0 and time.monotonic() < deadline:
                for s in socks:
                    if s.poll(50):
                        reply = json.loads(s.recv_multipart()[-1])
                        validator.validate(reply)
                        replies += 1
        finally:
            beats.close()
        assert replies > 0 and sent > 100
        assert beats.max_gap() < 1.0, beats.times
        # Still serving, and still publishing.
        reply = ask_raw(dealer(ctx, pub), b"", b'{"kind": "snapshot_request", "topic": "event", "since": 0}')
        assert reply["error"] is None and reply["head"] == pub.heads["event"]


def test_commands_need_an_authenticated_client_or_the_localhost_option(ctx: zmq.Context, validator) -> None:
    from stream.listen import send_command

    calls: list[int] = []
    with Publisher("cam0", ANY_PORT, ANY_PORT) as pub:
        pub.on_command("neutral_restart", lambda: str(calls.append(1)))
        refused = send_command(pub.snapshot_endpoint, "neutral_restart")
        validator.validate(refused)
        assert refused["ok"] is False and "--allow-local-commands" in refused["error"]
        assert "--curve-public-keys" in refused["error"] and calls == []
    with Publisher("cam0", ANY_PORT, ANY_PORT, allow_local_commands=True) as pub:
        pub.on_command("neutral_restart", lambda: str(calls.append(1)))
        assert send_command(pub.snapshot_endpoint, "neutral_restart")["ok"] is True and calls == [1]


# ------------------------------------------------------------------------------------------
# The journal: a write error is said everywhere, a torn line never survives a reopen
# ------------------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_journal_on_a_full_device_is_reported_and_events_still_go_out(ctx: zmq.Context, validator) -> None:
    errors: list[str] = []
    with Publisher("cam0", ANY_PORT, None, journal="/dev/full", on_journal_error=errors.append) as pub:
        sub = subscriber(ctx, pub)
        for k in range(3):
            pub.publish_event(me(20 * k), fps=30.0)
        got = receive(sub, lambda g: sum(m["kind"] == "event" for _, m in g) >= 3 and len(g) >= 4)
    events = [m for _, m in got if m["kind"] == "event"]
    assert [m["seq"] for m in events] == [1, 2, 3]  # on the wire all the same
    reports = [m for _, m in got if m["kind"] == "status" and m["status"] != "heartbeat"]
    assert len(reports) == 1 and len(errors) == 1  # once, not once per message
    validator.validate(reports[0])
    detail = reports[0]["detail"]
    assert detail == errors[0] == pub.journal_error
    assert "/dev/full" in detail and "No space left on device" in detail and "before event #1" in detail


_FULL_DISK_CHILD = r"""
import json, resource, signal, sys, time
import zmq
from stream.intervals import ExpressionType, Interval
from stream.publish import Publisher, topic_of

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
ctx = zmq.Context()
with Publisher("cam0", "tcp://127.0.0.1:*", None, journal=sys.argv[1], heartbeat_s=0.1) as pub:
    sub = ctx.socket(zmq.SUB)
    sub.subscribe(b"mespot.")
    sub.connect(pub.endpoint)
    while not sub.poll(100):
        pass
    for k in range(20):
        pub.publish_event(Interval(20 * k, 20 * k + 9, ExpressionType.ME, score=0.5), fps=30.0)
    pub.flush()
    time.sleep(0.3)
    while sub.poll(100):
        print(sub.recv_multipart()[1].decode(), flush=True)
sys.exit(1 if pub.journal_error else 0)
"""


def test_journal_on_a_full_file_system_ends_cleanly_and_nothing_is_unaccounted(tmp_path: Path) -> None:
    """The file system fills up mid-line (a file-size limit stands in for a small tmpfs): the
    journal keeps whole lines only, and it plus the status topic account for every event."""
    import subprocess
    import sys

    journal = tmp_path / "cam0.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD, str(journal), "3000"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "write failed" in done.stderr and str(journal) in done.stderr
    wire = [json.loads(line) for line in done.stdout.splitlines()]
    wire_events = [m for m in wire if m["kind"] == "event"]
    assert [m["seq"] for m in wire_events] == list(range(1, 21))
    data = journal.read_bytes()
    assert data.endswith(b"\n")  # the torn line was cut off
    kept = [json.loads(line) for line in data.decode().splitlines()]
    kept_events = [m for m in kept if m["kind"] == "event"]
    assert 0 < len(kept_events) < 20 and kept_events == wire_events[: len(kept_events)]
    report = next(m for m in wire if m["kind"] == "status" and "write failed" in m.get("detail", ""))
    assert f"before event #{len(kept_events) + 1} " in report["detail"]
    # Reopened (space again): appends start on a line of their own, and every line parses.
    with Publisher("cam0", ANY_PORT, None, journal=journal) as pub:
        pub.publish_event(me(0), fps=30.0)
    lines = journal.read_text().splitlines()
    assert len(lines) == len(kept) + 1 and all(json.loads(line)["schema"] == SCHEMA for line in lines)


def test_a_torn_last_line_is_cut_off_when_the_journal_is_reopened(tmp_path: Path, caplog) -> None:
    journal = tmp_path / "cam0.jsonl"
    with Publisher("cam0", ANY_PORT, None, journal=journal) as pub:
        pub.publish_event(me(0), fps=30.0)
    whole = journal.read_bytes()
    torn = b'{"schema":"mespot.events/1","kind":"event","stream":"cam0","seq":2,"onset'
    journal.write_bytes(whole + torn)  # a crash in the middle of a line
    with Publisher("cam0", ANY_PORT, None, journal=journal, journal_fsync=True) as pub:
        assert pub.journal_repaired == len(torn)
        pub.publish_event(me(40), fps=30.0)
    assert "torn" in caplog.text
    lines = journal.read_text().splitlines()
    assert [json.loads(line)["onset_frame"] for line in lines] == [0, 40]
    # A journal that is one torn line and nothing else.
    journal.write_bytes(torn)
    with Publisher("cam0", ANY_PORT, None, journal=journal) as pub:
        pub.publish_event(me(80), fps=30.0)
    assert [json.loads(line)["onset_frame"] for line in journal.read_text().splitlines()] == [80]
