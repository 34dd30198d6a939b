"""The subscriber side of ``mespot.events/1``: a gap-recovering `Listener` and ``mespot listen``.

A `Listener` subscribes to a publisher's PUB endpoint and keeps, per (stream, topic), the
session and the last sequence number it delivered. A message further ahead than the next one
(a dropped connection, a slow joiner, a full queue) is a *gap*: the listener asks the snapshot
endpoint for the messages after the last one it has, delivers those it gets (marked
``recovered``) before the message that revealed the gap, and reports the gap (`GapReport`: how
many were recovered, how many were lost because they had left the publisher's history). The
heads in each heartbeat reveal a gap at the tail within one heartbeat, so the listener always
takes the status topic too (it delivers status messages only when asked for them).

On start, and on first contact with a new session, the topics in ``catch_up`` (default: events)
are fetched from the snapshot endpoint, so a late joiner gets the events published before it
connected. The sockets are used only from the thread that calls `recv`.

Usage::

    with Listener("tcp://127.0.0.1:5556", "tcp://127.0.0.1:5557") as listener:
        for item in listener:
            if isinstance(item, Received) and item.kind == "event":
                print(item.message["type"], item.message["onset_s"], item.message["offset_s"])
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import zmq

from stream.errors import ConfigError
from stream.publish import (
    DEFAULT_ENDPOINT,
    DEFAULT_SNAPSHOT_ENDPOINT,
    SCHEMA,
    TOPICS,
    CurveClient,
    require_curve,
)

log = logging.getLogger(__name__)

__all__ = [
    "GapReport",
    "Listener",
    "Received",
    "SessionChange",
    "format_command_reply",
    "format_item",
    "send_command",
]


@dataclass(frozen=True)
class Received:
    """A message as published.

    Attributes:
        message: the decoded JSON message (see docs/events.md).
        recovered: True when it came from the snapshot endpoint after a gap.
    """

    message: dict[str, Any]
    recovered: bool = False

    @property
    def kind(self) -> str:
        return self.message["kind"]

    @property
    def stream(self) -> str:
        return self.message["stream"]

    @property
    def seq(self) -> int:
        return self.message["seq"]


@dataclass(frozen=True)
class GapReport:
    """Messages that did not arrive over the subscription.

    Attributes:
        stream: the stream.
        topic: the topic (event, score or status).
        session: the publisher's session.
        first: the first missing sequence number.
        last: the last missing sequence number.
        recovered: how many of them came from the snapshot endpoint (delivered after this report).
        lost: how many could not be recovered.
        reason: what revealed the gap (``sequence``, ``heartbeat``, ``late join``) and, for lost
            messages, why they were lost.
    """

    stream: str
    topic: str
    session: str
    first: int
    last: int
    recovered: int
    lost: int
    reason: str

    @property
    def missing(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class SessionChange:
    """A stream's publisher started a new session (it restarted).

    Attributes:
        stream: the stream.
        old: the previous session (None on first contact).
        new: the new session.
    """

    stream: str
    old: str | None
    new: str


Item = Received | GapReport | SessionChange
_MAX_PAGES = 64  # snapshot replies fetched for one gap (a publisher's history is bounded anyway)


@dataclass
class _TopicState:
    session: str
    last: int  # the last sequence number delivered or accounted for


class Listener:
    """Subscribes to mespot events, detects sequence gaps and recovers them (module docstring).

    Args:
        endpoint: the publisher's PUB endpoint, or several.
        snapshot: the publisher's snapshot endpoint; None: gaps are reported, not recovered.
        topics: the topics to deliver (event, score, status); status is always received.
        stream: take only this stream; None: every stream on the endpoints.
        catch_up: topics fetched from the snapshot endpoint on start and on first contact with a
            session (a late joiner gets the earlier events).
        curve: CURVE client keys; None: plain TCP.
        snapshot_timeout_s: how long to wait for a snapshot reply.
        heartbeats: deliver heartbeats too (when status is among the topics).
    """

    def __init__(
        self,
        endpoint: str | Sequence[str] = DEFAULT_ENDPOINT,
        snapshot: str | None = DEFAULT_SNAPSHOT_ENDPOINT,
        *,
        topics: Iterable[str] = TOPICS,
        stream: str | None = None,
        catch_up: Iterable[str] = ("event",),
        curve: CurveClient | None = None,
        snapshot_timeout_s: float = 2.0,
        heartbeats: bool = True,
    ) -> None:
        self.topics = tuple(dict.fromkeys(topics))
        for t in (*self.topics, *catch_up):
            if t not in TOPICS:
                raise ConfigError(f"listener topic {t!r}: choose from {list(TOPICS)}")
        if curve is not None:
            require_curve()
        self.endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint)
        self.snapshot = snapshot
        self.stream = stream
        self.catch_up = tuple(t for t in catch_up if t in self.topics)
        self.snapshot_timeout_s = float(snapshot_timeout_s)
        self.heartbeats = heartbeats
        self._curve = curve
        self._state: dict[tuple[str, str], _TopicState] = {}
        self._sessions: dict[str, str] = {}
        self._out: collections.deque[Item] = collections.deque()
        self._ids = itertools.count(1)
        self.malformed = 0
        self.last_heard: float | None = None  # time.monotonic() of the last message

        self._ctx = zmq.Context()
        self._dealer: zmq.Socket | None = None
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.linger = 0
        self._sub.rcvhwm = 100_000
        self._sub.reconnect_ivl = 100
        self._sub.reconnect_ivl_max = 1000
        self._sub.heartbeat_ivl = 1000  # ZMTP pings: a dead peer is noticed, the link re-made
        self._sub.heartbeat_timeout = 3000
        if curve is not None:
            curve.apply(self._sub)
        self._wanted = set(self.topics) | {"status"}
        if stream is None:  # the stream sits between "mespot." and the topic: filter topics here
            self._sub.subscribe(b"mespot.")
        else:
            for t in sorted(self._wanted):
                self._sub.subscribe(f"mespot.{stream}.{t}".encode())
        for ep in self.endpoints:
            try:
                self._sub.connect(ep)
            except zmq.ZMQError as exc:
                self.close()
                raise ConfigError(f"listener endpoint {ep!r}: {exc}") from exc
        try:
            for topic in self.catch_up:  # a late joiner: what was published before it came
                self._fetch_initial(topic)
        except ConfigError:
            self.close()
            raise

    # --------------------------------------------------------------------------------------
    # Public API
    # --------------------------------------------------------------------------------------

    def recv(self, timeout_s: float | None = None) -> Item | None:
        """The next message or report; None when nothing came within `timeout_s` (None: wait)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._out:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._sub.poll(None if remaining is None else int(remaining * 1000)):
                return None
            self._drain()
        return self._out.popleft()

    def __iter__(self) -> Iterator[Item]:
        while True:
            item = self.recv()
            if item is not None:
                yield item

    def state(self) -> dict[tuple[str, str], tuple[str, int]]:
        """(stream, topic) -> (session, last sequence number accounted for)."""
        return {k: (v.session, v.last) for k, v in self._state.items()}

    def close(self) -> None:
        """Close the sockets (no linger) and the context."""
        for sock in (self._sub, self._dealer):
            if sock is not None and not sock.closed:
                sock.close(0)
        self._dealer = None
        if not self._ctx.closed:
            self._ctx.term()

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --------------------------------------------------------------------------------------
    # Incoming messages
    # --------------------------------------------------------------------------------------

    def _drain(self) -> None:
        while True:
            try:
                frames = self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = self._decode(frames[-1]) if len(frames) == 2 else self._decode(b"")
            if msg is None or msg["kind"] not in self._wanted:
                continue
            self.last_heard = time.monotonic()
            self._on_message(msg)

    def _decode(self, data: bytes) -> dict[str, Any] | None:
        try:
            msg = json.loads(data)
        except ValueError:
            msg = None
        ok = (
            isinstance(msg, dict)
            and msg.get("schema") == SCHEMA
            and msg.get("kind") in TOPICS
            and isinstance(msg.get("seq"), int)
            and isinstance(msg.get("session"), str)
            and isinstance(msg.get("stream"), str)
        )
        if not ok:
            self.malformed += 1
            log.warning("listener: skipped a message that is not %s: %.200r", SCHEMA, data)
            return None
        return msg

    def _deliver(self, msg: dict[str, Any], recovered: bool = False) -> None:
        kind = msg["kind"]
        if kind not in self.topics:
            return
        if kind == "status" and msg.get("status") == "heartbeat" and not self.heartbeats:
            return
        self._out.append(Received(msg, recovered))

    def _on_message(self, msg: dict[str, Any]) -> None:
        stream, topic, session, seq = msg["stream"], msg["kind"], msg["session"], msg["seq"]
        if self._sessions.get(stream) != session:
            self._out.append(SessionChange(stream, self._sessions.get(stream), session))
            self._sessions[stream] = session
        st = self._state.get((stream, topic))
        if st is None or st.session != session:
            st = self._first_contact(stream, topic, session, upto=seq - 1, reason="late join")
        if seq <= st.last:
            return  # already delivered (from a snapshot)
        if seq > st.last + 1 and topic in self.topics:  # (status taken only for liveness: no report)
            self._recover(st, stream, topic, seq - 1, "sequence")
        self._deliver(msg)
        st.last = seq
        if topic == "status" and isinstance(msg.get("heads"), dict):
            self._check_heads(stream, session, msg["heads"])

    def _check_heads(self, stream: str, session: str, heads: dict[str, Any]) -> None:
        """A heartbeat names the last sequence number of every topic: anything not seen is lost."""
        for topic in self.topics:
            head = heads.get(topic)
            if topic == "status" or not isinstance(head, int):
                continue
            st = self._state.get((stream, topic))
            if st is None or st.session != session:
                st = self._first_contact(stream, topic, session, upto=head, reason="late join")
            if head > st.last:
                self._recover(st, stream, topic, head, "heartbeat")

    def _first_contact(self, stream: str, topic: str, session: str, *, upto: int, reason: str) -> _TopicState:
        """State for a (stream, topic) first seen in this session; catch-up topics fetch the past."""
        if topic in self.catch_up and upto >= 1:
            st = _TopicState(session, 0)
            self._state[(stream, topic)] = st
            self._recover(st, stream, topic, upto, reason)
        else:
            st = _TopicState(session, max(0, upto))
            self._state[(stream, topic)] = st
        return st

    # --------------------------------------------------------------------------------------
    # Snapshots
    # --------------------------------------------------------------------------------------

    def _fetch_initial(self, topic: str) -> None:
        reply, why = self._request(topic, since=0, session=None, stream=self.stream)
        if reply is None:
            log.info("listener: no initial snapshot of %s (%s)", topic, why)
            return
        stream, session = reply["stream"], reply["session"]
        if self._sessions.get(stream) != session:
            self._out.append(SessionChange(stream, self._sessions.get(stream), session))
            self._sessions[stream] = session
        msgs = [m for m in reply["messages"] if m.get("session") == session]
        head = max([m["seq"] for m in msgs], default=0)
        if head:
            lost = head - len(msgs)
            why = "late join" if not lost else "late join; older ones left the publisher's history"
            self._out.append(GapReport(stream, topic, session, 1, head, len(msgs), lost, why))
        for m in msgs:
            self._deliver(m, recovered=True)
        self._state[(stream, topic)] = _TopicState(session, head)

    def _recover(self, st: _TopicState, stream: str, topic: str, upto: int, reason: str) -> None:
        """Fetch (st.last, upto] from the snapshot endpoint; deliver what came, report the gap."""
        first = st.last + 1
        if upto < first:
            return
        got: list[dict[str, Any]] = []
        why = ""
        if self.snapshot is None:
            why = "no snapshot endpoint"
        else:
            reply, why = self._request(topic, since=st.last, session=st.session, stream=stream)
            if reply is not None:
                if reply["session"] != st.session:
                    why = "the publisher restarted (new session)"
                else:
                    got = [m for m in reply["messages"] if first <= m.get("seq", 0) <= upto]
                    if not reply.get("complete", True):
                        why = f"older than the publisher's history (it holds from #{reply['oldest']})"
        lost = upto - first + 1 - len(got)
        text = reason if lost == 0 else f"{reason}; {lost} lost: {why or 'not in the reply'}"
        self._out.append(GapReport(stream, topic, st.session, first, upto, len(got), lost, text))
        for m in got:
            self._deliver(m, recovered=True)
        st.last = upto

    def _snapshot_socket(self) -> zmq.Socket:
        if self._dealer is None:
            sock = self._ctx.socket(zmq.DEALER)
            sock.linger = 0
            if self._curve is not None:
                self._curve.apply(sock)
            try:
                sock.connect(self.snapshot)
            except zmq.ZMQError as exc:
                sock.close(0)
                raise ConfigError(f"listener snapshot endpoint {self.snapshot!r}: {exc}") from exc
            self._dealer = sock
        return self._dealer

    def _request(
        self, topic: str, *, since: int, session: str | None, stream: str | None
    ) -> tuple[dict[str, Any] | None, str]:
        """A snapshot of everything after `since`; (reply, "") or (None, why).

        A publisher sends at most ``snapshot_max_messages`` per reply, the oldest first: the
        next page is asked for from the last message received, until the head is reached.
        """
        reply, why = self._request_page(topic, since=since, session=session, stream=stream)
        if reply is None:
            return None, why
        messages = list(reply["messages"])
        for _ in range(_MAX_PAGES):
            last = messages[-1].get("seq") if messages else None
            if not isinstance(last, int) or last >= reply.get("head", 0):
                break
            page, why = self._request_page(topic, since=last, session=reply["session"], stream=stream)
            if page is None or page["session"] != reply["session"] or not page["messages"]:
                break
            messages.extend(page["messages"])
            reply["head"] = page.get("head", reply.get("head", 0))
        reply["messages"] = messages
        return reply, ""

    def _request_page(
        self, topic: str, *, since: int, session: str | None, stream: str | None
    ) -> tuple[dict[str, Any] | None, str]:
        """One snapshot request; (reply, "") or (None, why)."""
        if self.snapshot is None:
            return None, "no snapshot endpoint"
        rid = next(self._ids)
        req = {
            "schema": SCHEMA,
            "kind": "snapshot_request",
            "request_id": rid,
            "stream": stream,
            "topic": topic,
            "since": since,
            "session": session,
        }
        sock = self._snapshot_socket()
        # a reply with another id is a late reply to an earlier request
        reply = _request_reply(sock, req, self.snapshot_timeout_s, lambda r: r.get("request_id") == rid)
        if reply is not None:
            if reply.get("error"):
                return None, f"snapshot endpoint: {reply['error']}"
            return reply, ""
        # No answer: drop the socket so a stale reply cannot come later; reconnect next time.
        sock.close(0)
        self._dealer = None
        return None, f"snapshot endpoint {self.snapshot} did not answer within {self.snapshot_timeout_s} s"


def _request_reply(
    sock: zmq.Socket, request: dict[str, Any], timeout_s: float, accept: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """Send one JSON request on a DEALER socket; the first JSON object reply `accept` takes, or
    None when none came within `timeout_s` (other replies and non-JSON frames are passed over)."""
    sock.send_multipart([b"", json.dumps(request).encode()])
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        if not sock.poll(int(remaining * 1000) + 1):
            break
        try:
            reply = json.loads(sock.recv_multipart()[-1])
        except ValueError:
            continue
        if isinstance(reply, dict) and accept(reply):
            return reply
    return None


# ------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------


def send_command(
    endpoint: str,
    name: str,
    timeout_s: float = 5.0,
    curve: CurveClient | None = None,
    *,
    stream: str | None = None,
) -> dict[str, Any]:
    """Send a command to a publisher's snapshot/command endpoint and return its reply.

    Args:
        endpoint: the publisher's snapshot endpoint (ROUTER).
        name: the command, e.g. ``neutral_restart``.
        timeout_s: how long to wait for the reply.
        curve: CURVE client keys; None: plain TCP.
        stream: the stream the command is for (the publisher refuses another); None: any.

    Returns:
        The ``command_reply`` (docs/events.md, "Commands"): ``ok``, ``detail`` and ``error``
        say what came of it.

    Raises:
        TimeoutError: no reply within `timeout_s`.
        ConfigError: a bad endpoint.
    """
    if curve is not None:
        require_curve()
    rid = uuid.uuid4().hex
    req: dict[str, Any] = {"schema": SCHEMA, "kind": "command", "command": name, "request_id": rid}
    if stream is not None:
        req["stream"] = stream
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        if curve is not None:
            curve.apply(sock)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            raise ConfigError(f"command endpoint {endpoint!r}: {exc}") from exc
        reply = _request_reply(
            sock,
            req,
            timeout_s,
            # A publisher from before commands existed answers with a snapshot error.
            lambda r: (
                (r.get("kind") == "command_reply" and r.get("request_id") == rid)
                or (r.get("kind") == "snapshot" and bool(r.get("error")))
            ),
        )
        if reply is not None:
            if reply.get("kind") == "command_reply":
                return reply
            return {
                "schema": SCHEMA,
                "kind": "command_reply",
                "stream": reply.get("stream"),
                "session": reply.get("session"),
                "command": name,
                "request_id": rid,
                "ok": False,
                "detail": "",
                "error": f"the publisher does not take commands ({reply['error']})",
            }
        raise TimeoutError(f"command endpoint {endpoint} did not answer {name!r} within {timeout_s} s")
    finally:
        ctx.destroy(linger=0)


def format_command_reply(reply: dict[str, Any], as_json: bool = False) -> str:
    """One printable line for a command reply (``--json``: the reply JSON itself)."""
    if as_json:
        return json.dumps(reply, separators=(",", ":"))
    if reply.get("ok"):
        return f"{reply.get('stream')} command {reply.get('command')}: ok: {reply.get('detail')}"
    return f"{reply.get('stream')} command {reply.get('command')}: refused: {reply.get('error')}"


# ------------------------------------------------------------------------------------------
# `mespot listen`
# ------------------------------------------------------------------------------------------


def default_snapshot(endpoint: str) -> str | None:
    """The publisher's default pairing: tcp://host:port -> tcp://host:(port + 1)."""
    if endpoint.startswith("tcp://") and endpoint.rsplit(":", 1)[-1].isdigit():
        host, port = endpoint.rsplit(":", 1)
        return f"{host}:{int(port) + 1}"
    return None


def format_item(item: Item, as_json: bool = False) -> str:
    """One printable line for a message or report (``--json``: the message JSON itself)."""
    if as_json:
        if isinstance(item, Received):
            return json.dumps(item.message, separators=(",", ":"))
        kind = "gap" if isinstance(item, GapReport) else "session"
        return json.dumps({"kind": kind, **dataclasses.asdict(item)}, separators=(",", ":"))
    if isinstance(item, GapReport):
        return (
            f"{item.stream} gap {item.topic} #{item.first}-{item.last}: recovered {item.recovered}, "
            f"lost {item.lost} ({item.reason})"
        )
    if isinstance(item, SessionChange):
        return f"{item.stream} session {item.new}" + ("" if item.old is None else f" (was {item.old})")
    m = item.message
    tag = f"{m['stream']} #{m['seq']}" + (" (recovered)" if item.recovered else "")
    if m["kind"] == "event":
        lat = "" if m.get("latency_s") is None else f" latency {m['latency_s']:.3f} s"
        score = "" if m.get("score") is None else f" score {m['score']:.3f}"
        return (
            f"{tag} event {m['type']} frames {m['onset_frame']}-{m['offset_frame']} "
            f"({m['onset_s']:.3f}-{m['offset_s']:.3f} s){score}{lat}"
        )
    if m["kind"] == "score":

        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"

        scores = f"me {f(m['me'])} mae {f(m['mae'])} act {f(m['actionness'])}"
        return f"{tag} score snippet {m['snippet']} {scores}"
    if m.get("status") == "heartbeat":
        fps = "-" if m.get("fps") is None else f"{m['fps']:.1f}"
        return f"{tag} heartbeat fps {fps} drops {m.get('drops')} face {m.get('face')} heads {m.get('heads')}"
    detail = f" {m['detail']}" if m.get("detail") else ""
    return f"{tag} status {m.get('status')} frame {m.get('frame_index')}{detail}"
