"""One endpoint for many spotters: a ZeroMQ broker that forwards their streams and snapshots.

A lab records several people at once, one spotter per camera, on one machine or several. The
broker connects to every spotter's PUB and snapshot endpoints and offers one PUB endpoint and one
snapshot endpoint in their place:

    spotter cam0 (PUB :5556, snapshot :5557) ─┐                  ┌─ subscriber (Listener)
    spotter cam1 (PUB :5566, snapshot :5567) ─┼─ broker (PUB :5656, snapshot :5657) ─┼─ subscriber
    spotter cam2 (PUB :5576, snapshot :5577) ─┘                  └─ ...

- Messages are forwarded unchanged (topics ``mespot.<stream>.<kind>``, sequence numbers and
  sessions as each spotter sent them), so a `stream.listen.Listener` on the broker sees every
  stream exactly as it would see each spotter, gaps and restarts included.
- A snapshot request names its stream (``"stream": "cam1"``): the broker sends it to the spotter
  it heard that stream from, with a request id of its own, and returns the reply to the client
  with the client's id. A request without a stream goes to the only stream when there is one,
  else gets an error reply naming the streams. So a late joiner recovers any stream's missed
  events through the broker (the listener asks per stream on first contact).
- The broker connects, the spotters bind: a spotter that stops and starts again on the same
  endpoints is reconnected by ZeroMQ, and its new session reaches the subscribers as it would
  directly. Nothing is configured on the spotters.
- Commands (``neutral_restart``) are not forwarded: behind a broker every client would look local
  to the spotter. Send them to the spotter's own endpoint.
- Bounded: request size (ZeroMQ drops larger frames unread), waiting requests (oldest dropped,
  counted), requests in flight per spotter (a spotter that does not answer within the timeout
  gets its clients an error reply); a slow subscriber loses messages at the PUB high-water mark
  as it would on a spotter, and recovers them through snapshots.

Design choice: the broker connects to spotters listed on its command line (``--spotter``) rather
than spotters connecting to the broker, so that spotters need no new option and keep serving their
own endpoints to local clients; the broker learns which spotter owns which stream from the
messages themselves.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zmq

from stream.errors import ConfigError
from stream.publish import _encode, _request_id, _shown, snapshot_reply_base

log = logging.getLogger(__name__)

DEFAULT_BROKER_ENDPOINT = "tcp://127.0.0.1:5656"
DEFAULT_BROKER_SNAPSHOT = "tcp://127.0.0.1:5657"
_PREFIX = b"mespot."


@dataclass(frozen=True)
class SpotterEndpoints:
    """Where one spotter publishes (PUB) and answers snapshot requests (None: it does not)."""

    pub: str
    snapshot: str | None = None

    @classmethod
    def parse(cls, text: str) -> SpotterEndpoints:
        """``PUB[,SNAPSHOT]``, e.g. ``tcp://10.0.0.5:5556,tcp://10.0.0.5:5557``.

        Raises:
            ConfigError: empty, or more than two endpoints.
        """
        parts = [p.strip() for p in text.split(",")]
        if not parts[0] or len(parts) > 2 or (len(parts) == 2 and not parts[1]):
            raise ConfigError(f"--spotter {text!r}: give PUB or PUB,SNAPSHOT endpoints")
        return cls(parts[0], parts[1] if len(parts) == 2 else None)


@dataclass
class _InFlight:
    client: list[bytes]  # the ROUTER envelope of the client
    request_id: Any  # the client's own id, given back in the reply
    stream: str
    sent: float


class Broker:
    """Forwards many spotters' streams and snapshot requests through one pair of endpoints.

    Args:
        spotters: the spotters' endpoints.
        endpoint: the PUB endpoint subscribers connect to.
        snapshot_endpoint: the snapshot endpoint (ROUTER) clients send requests to.
        request_timeout_s: how long a spotter may take to answer a forwarded request.
        max_request_bytes: the largest request taken (larger: an error reply; over 4x: dropped
            unread by ZeroMQ).
        max_pending_requests: requests waiting to be forwarded (the oldest are dropped).
        max_in_flight: forwarded requests awaiting a reply, per spotter.

    Use as a context manager, or `start` / `close`; the forwarding runs in one thread.
    """

    def __init__(
        self,
        spotters: Sequence[SpotterEndpoints],
        endpoint: str = DEFAULT_BROKER_ENDPOINT,
        snapshot_endpoint: str | None = DEFAULT_BROKER_SNAPSHOT,
        *,
        request_timeout_s: float = 5.0,
        max_request_bytes: int = 65_536,
        max_pending_requests: int = 256,
        max_in_flight: int = 64,
    ) -> None:
        if not spotters:
            raise ConfigError("broker: give at least one spotter (--spotter PUB[,SNAPSHOT])")
        if not request_timeout_s > 0:
            raise ConfigError(f"broker request_timeout_s={request_timeout_s!r}: must be > 0")
        self.spotters = list(spotters)
        self.session = uuid.uuid4().hex
        self.request_timeout_s = float(request_timeout_s)
        self.max_request_bytes = int(max_request_bytes)
        self.max_pending_requests = int(max_pending_requests)
        self.max_in_flight = int(max_in_flight)
        self.forwarded = 0  # messages forwarded to subscribers
        self.dropped_requests = 0
        self.owner: dict[str, int] = {}  # stream -> index of the spotter it came from
        self._ctx = zmq.Context()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._in_flight: dict[int, _InFlight] = {}
        self._pending: collections.deque[tuple[list[bytes], bytes | None, str | None]] = collections.deque()
        try:
            self._pub = self._bind(zmq.XPUB, endpoint, "broker PUB endpoint")
            self._pub.sndhwm = 100_000
            self.endpoint = self._pub.getsockopt_string(zmq.LAST_ENDPOINT)
            self._router = None
            self.snapshot_endpoint = None
            if snapshot_endpoint is not None:
                self._router = self._bind(zmq.ROUTER, snapshot_endpoint, "broker snapshot endpoint")
                self._router.maxmsgsize = 4 * self.max_request_bytes
                self._router.router_mandatory = False
                self.snapshot_endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
            self._subs: list[zmq.Socket] = []
            self._dealers: list[zmq.Socket | None] = []
            for spotter in self.spotters:
                sub = self._ctx.socket(zmq.SUB)
                sub.linger = 0
                sub.rcvhwm = 100_000
                sub.reconnect_ivl, sub.reconnect_ivl_max = 100, 1000
                sub.subscribe(_PREFIX)
                self._connect(sub, spotter.pub)
                self._subs.append(sub)
                dealer = None
                if spotter.snapshot is not None:
                    dealer = self._ctx.socket(zmq.DEALER)
                    dealer.linger = 0
                    dealer.reconnect_ivl, dealer.reconnect_ivl_max = 100, 1000
                    self._connect(dealer, spotter.snapshot)
                self._dealers.append(dealer)
        except BaseException:
            self._ctx.destroy(0)
            raise

    def _bind(self, kind: int, endpoint: str, what: str) -> zmq.Socket:
        sock = self._ctx.socket(kind)
        sock.linger = 0
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise ConfigError(f"{what} {endpoint!r}: {exc}") from exc
        return sock

    @staticmethod
    def _connect(sock: zmq.Socket, endpoint: str) -> None:
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise ConfigError(f"broker: cannot connect to spotter endpoint {endpoint!r}: {exc}") from exc

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Broker:
        self._thread = threading.Thread(target=self._run, name="mespot-broker", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self._ctx.destroy(0)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_forever(self, stop: threading.Event) -> None:
        """Forward in the calling thread until `stop` is set."""
        self._stop = stop
        self._run()

    # -- the forwarding loop -----------------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        for sub in self._subs:
            poller.register(sub, zmq.POLLIN)
        for dealer in self._dealers:
            if dealer is not None:
                poller.register(dealer, zmq.POLLIN)
        poller.register(self._pub, zmq.POLLIN)  # subscriptions (read and passed over)
        if self._router is not None:
            poller.register(self._router, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                ready = dict(poller.poll(50))
            except zmq.ZMQError:
                return  # the context was closed
            for i, sub in enumerate(self._subs):
                if sub in ready:
                    self._forward(i, sub)
            for dealer in self._dealers:
                if dealer is not None and dealer in ready:
                    self._take_replies(dealer)
            if self._pub in ready:
                while self._pub.poll(0):
                    self._pub.recv_multipart()
            if self._router is not None:
                if self._router in ready:
                    self._take_requests()
                self._serve_requests()
                self._expire(time.monotonic())

    def _forward(self, index: int, sub: zmq.Socket) -> None:
        """Pass a spotter's messages on unchanged; note which stream it owns (from the topic)."""
        for _ in range(1000):  # bounded per round: every spotter and every request gets its turn
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            topic = frames[0]
            stream = topic[len(_PREFIX) : topic.rfind(b".")].decode("utf-8", "replace")
            if self.owner.get(stream) != index:
                if stream in self.owner:
                    log.warning("broker: stream %s moved to spotter %s", stream, self.spotters[index].pub)
                self.owner[stream] = index
            try:
                self._pub.send_multipart(frames, zmq.NOBLOCK)
                self.forwarded += 1
            except zmq.Again:
                pass  # XPUB drops for slow subscribers as a PUB does

    def _take_requests(self) -> None:
        assert self._router is not None
        for _ in range(256):
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, rest = frames[0], frames[1:]
            delimited = bool(rest) and len(rest[0]) == 0
            envelope = [identity, b""] if delimited else [identity]
            body = rest[1:] if delimited else rest
            size = sum(len(f) for f in body)
            problem = None
            if size > self.max_request_bytes:
                problem = f"bad request: {size} bytes, over the limit of {self.max_request_bytes} bytes"
            elif len(body) != 1:
                problem = f"bad request: {len(body)} frames; send one JSON frame (after an empty delimiter)"
            if len(self._pending) >= self.max_pending_requests:
                self._pending.popleft()
                self.dropped_requests += 1
            self._pending.append((envelope, None if problem else body[0], problem))

    def _serve_requests(self) -> None:
        t0 = time.monotonic()
        while self._pending and time.monotonic() - t0 < 0.01:
            envelope, payload, problem = self._pending.popleft()
            req: Any = None
            if problem is None:
                try:
                    req = json.loads(payload or b"")
                except RecursionError:
                    problem = "bad request: JSON nested too deeply"
                except ValueError as exc:
                    problem = f"bad request: {exc}"
                else:
                    if not isinstance(req, dict):
                        problem = "bad request: not a JSON object"
            if problem is None:
                problem = self._route(envelope, req)
            if problem is not None:
                rid = req.get("request_id") if isinstance(req, dict) else None
                stream = req.get("stream") if isinstance(req, dict) else None
                self._reply(envelope, self._error(rid, stream, problem))

    def _route(self, envelope: list[bytes], req: dict[str, Any]) -> str | None:
        """Forward one request to the spotter of its stream; why not, or None when sent."""
        if req.get("kind") == "command":
            return (
                "the broker does not forward commands (behind it every client looks local to the "
                "spotter): send them to the spotter's own snapshot endpoint"
            )
        if req.get("kind") != "snapshot_request":
            return "bad request: kind must be 'snapshot_request'"
        stream = req.get("stream")
        if stream is None and len(self.owner) == 1:
            stream = next(iter(self.owner))
        if not isinstance(stream, str) or stream not in self.owner:
            known = sorted(self.owner)
            what = "name the stream" if stream is None else f"no spotter has sent stream {_shown(stream)}"
            return f"broker: {what}; streams heard so far: {known}"
        index = self.owner[stream]
        dealer = self._dealers[index]
        if dealer is None:
            return f"broker: the spotter of stream {stream!r} has no snapshot endpoint configured"
        if (
            sum(1 for f in self._in_flight.values() if self.owner.get(f.stream) == index)
            >= self.max_in_flight
        ):
            self.dropped_requests += 1
            return f"broker: too many requests in flight to the spotter of stream {stream!r}; try again"
        token = next(self._ids)
        self._in_flight[token] = _InFlight(envelope, req.get("request_id"), stream, time.monotonic())
        forwarded = dict(req, request_id=f"broker-{token}", stream=stream)
        try:
            dealer.send_multipart([b"", _encode(forwarded)], zmq.NOBLOCK)
        except zmq.ZMQError:
            del self._in_flight[token]
            return f"broker: the spotter of stream {stream!r} is not reachable"
        return None

    def _take_replies(self, dealer: zmq.Socket) -> None:
        for _ in range(256):
            try:
                frames = dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = json.loads(frames[-1])
                rid = reply.get("request_id")
                token = int(rid.removeprefix("broker-")) if isinstance(rid, str) else None
            except (ValueError, AttributeError, TypeError):
                continue
            flight = self._in_flight.pop(token, None) if token is not None else None
            if flight is None:
                continue  # late: its client already had the timeout error
            reply["request_id"] = _request_id(flight.request_id)
            self._reply(flight.client, _encode(reply))

    def _expire(self, now: float) -> None:
        late = [t for t, f in self._in_flight.items() if now - f.sent > self.request_timeout_s]
        for token in late:
            flight = self._in_flight.pop(token)
            self._reply(
                flight.client,
                self._error(
                    flight.request_id,
                    flight.stream,
                    f"broker: the spotter of stream {flight.stream!r} did not answer within "
                    f"{self.request_timeout_s:g} s",
                ),
            )

    def _error(self, rid: object, stream: object, error: str) -> bytes:
        known = isinstance(stream, str) and stream in self.owner
        return _encode(snapshot_reply_base(stream if known else "broker", self.session, rid, error))

    def _reply(self, envelope: list[bytes], data: bytes) -> None:
        assert self._router is not None
        try:
            self._router.send_multipart([*envelope, data], zmq.NOBLOCK)
        except zmq.ZMQError:
            self.dropped_requests += 1
