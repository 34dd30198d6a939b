"""Events over ZeroMQ: the publisher side of the ``mespot.events/1`` wire format.

One `Publisher` per stream (camera, feed or file) binds a PUB socket and, optionally, a ROUTER
socket answering snapshot requests. Messages are multipart ``[topic, JSON]`` with topics
``mespot.<stream>.event`` (finalised expression intervals), ``mespot.<stream>.score`` (per-snippet
scores) and ``mespot.<stream>.status`` (heartbeats and status events). docs/events.md describes
every field; docs/events.schema.json validates them.

Sequence numbers count per topic (1, 2, 3, ... within a session), so a subscriber that takes only
some topics can still tell a gap from a filtered message; every heartbeat carries the head (last
sequence number) of each topic, so a subscriber of the status topic also notices a lost message
at the tail within one heartbeat. A session id (a uuid per `Publisher`) tells a restarted
publisher from a gap.

Threading: the sockets live on one I/O thread. The publish methods (callable from any thread)
assign the sequence number under a lock and put the message on an internal queue; the I/O thread
sends it, keeps it in a bounded per-topic history (for snapshots), appends event and status
messages to the journal, sends heartbeats and answers snapshot requests. Scores are dropped (and
counted) when the queue is full; events and status messages never are.

The snapshot endpoint also takes commands (``{"kind": "command", "command": NAME}``), answered with
a ``command_reply``; `Publisher.on_command` registers what a command does (docs/events.md,
"Commands").
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import zmq

from stream.errors import ConfigError, MespotError
from stream.intervals import Interval

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_SNAPSHOT_ENDPOINT",
    "SCHEMA",
    "STATUS_KINDS",
    "TOPICS",
    "CurveClient",
    "CurveServer",
    "PublishError",
    "Publisher",
    "require_curve",
    "topic_of",
]

SCHEMA = "mespot.events/1"
TOPICS = ("event", "score", "status")
# "heartbeat" plus the kinds of stream.pipeline.StatusKind (kept equal by a test; not imported here
# because the pipeline module pulls in the whole vision stack).
STATUS_KINDS = ("heartbeat", "face_found", "face_lost", "time_gap", "source")
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
DEFAULT_SNAPSHOT_ENDPOINT = "tcp://127.0.0.1:5557"
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_COMMAND_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_JOURNALLED = ("event", "status")  # heartbeats excepted
_UNSET: Any = object()
_STOP = object()


class PublishError(MespotError):
    """The publisher cannot bind, is closed, or was given a bad argument."""


def topic_of(stream: str, kind: str) -> bytes:
    """The ZeroMQ topic frame of a message kind on a stream: ``mespot.<stream>.<kind>``."""
    return f"mespot.{stream}.{kind}".encode()


def _check_stream(stream: str) -> str:
    if not isinstance(stream, str) or not _STREAM_NAME.match(stream):
        raise ConfigError(f"stream name {stream!r}: use 1-64 letters, digits, '_' or '-' (no dots)")
    return stream


# ------------------------------------------------------------------------------------------
# CURVE
# ------------------------------------------------------------------------------------------


def _z85_key(key: bytes | str, what: str) -> bytes:
    k = key.encode() if isinstance(key, str) else bytes(key)
    if len(k) != 40:
        raise ConfigError(f"{what}: a CURVE key is 40 Z85 characters, got {len(k)}")
    return k


@dataclass(frozen=True)
class CurveServer:
    """CURVE keys of a publisher (both its sockets use them).

    Attributes:
        public_key: the server's public key (Z85, 40 characters); clients need it.
        secret_key: the server's secret key (Z85).
        client_keys: the public keys of the clients allowed in; None lets any client that
            completes the CURVE handshake in (encryption without client authentication).
    """

    public_key: bytes
    secret_key: bytes
    client_keys: tuple[bytes, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_key", _z85_key(self.public_key, "curve server public_key"))
        object.__setattr__(self, "secret_key", _z85_key(self.secret_key, "curve server secret_key"))
        if self.client_keys is not None:
            keys = tuple(_z85_key(k, "curve client key") for k in self.client_keys)
            object.__setattr__(self, "client_keys", keys)

    @classmethod
    def from_files(cls, secret_file: str | Path, clients_dir: str | Path | None = None) -> CurveServer:
        """Keys from `zmq.auth.create_certificates` files.

        Args:
            secret_file: the server's ``.key_secret`` certificate.
            clients_dir: a folder of allowed clients' ``.key`` certificates; None allows any client.
        """
        import zmq.auth

        public, secret = zmq.auth.load_certificate(str(secret_file))
        if secret is None:
            raise ConfigError(f"{secret_file}: not a secret certificate (no secret-key)")
        clients = None
        if clients_dir is not None:
            folder = Path(clients_dir)
            if not folder.is_dir():
                raise ConfigError(f"{folder}: CURVE client key folder does not exist")
            clients = tuple(zmq.auth.load_certificate(str(p))[0] for p in sorted(folder.glob("*.key")))
        return cls(public, secret, clients)


@dataclass(frozen=True)
class CurveClient:
    """CURVE keys of a subscriber.

    Attributes:
        server_public_key: the publisher's public key (Z85).
        public_key: this client's public key (Z85).
        secret_key: this client's secret key (Z85).
    """

    server_public_key: bytes
    public_key: bytes
    secret_key: bytes

    def __post_init__(self) -> None:
        for name in ("server_public_key", "public_key", "secret_key"):
            object.__setattr__(self, name, _z85_key(getattr(self, name), f"curve client {name}"))

    @classmethod
    def from_files(cls, server_public_file: str | Path, secret_file: str | Path) -> CurveClient:
        """Keys from `zmq.auth.create_certificates` files (server ``.key``, own ``.key_secret``)."""
        import zmq.auth

        server_public, _ = zmq.auth.load_certificate(str(server_public_file))
        public, secret = zmq.auth.load_certificate(str(secret_file))
        if secret is None:
            raise ConfigError(f"{secret_file}: not a secret certificate (no secret-key)")
        return cls(server_public, public, secret)

    def apply(self, sock: zmq.Socket) -> None:
        """Make `sock` a CURVE client of the server."""
        sock.curve_serverkey = self.server_public_key
        sock.curve_publickey = self.public_key
        sock.curve_secretkey = self.secret_key


class _AllowedKeys:
    """ZAP credentials provider: a fixed set of client public keys."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        self.keys = frozenset(keys)

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.keys


def require_curve() -> None:
    """Raise PublishError when this libzmq was built without CURVE."""
    if not zmq.has("curve"):
        raise PublishError(f"libzmq {zmq.zmq_version()} has no CURVE support (built without libsodium)")


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def _num(x: float | None) -> float | None:
    """JSON-safe float: NaN and None become null."""
    if x is None:
        return None
    f = float(x)
    return None if math.isnan(f) else f


def _encode(msg: Mapping[str, Any]) -> bytes:
    return json.dumps(msg, allow_nan=False, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------------------
# Publisher
# ------------------------------------------------------------------------------------------


class Publisher:
    """Publishes a stream's events, scores and status over ZeroMQ (module docstring).

    Args:
        stream: the stream's name (letters, digits, '_' or '-'), part of every topic.
        endpoint: where the PUB socket binds (``tcp://127.0.0.1:*`` picks a free port; see
            `endpoint` for the one bound). Localhost by default.
        snapshot_endpoint: where the snapshot ROUTER binds; None: no snapshots.
        journal: a JSON-lines file every event and status message is appended to (flushed per
            line, fsynced on close); None: no journal.
        curve: CURVE keys; None: plain TCP.
        history: messages kept per topic for snapshots.
        heartbeat_s: seconds between heartbeats (<= 1).
        score_rate_hz: send at most this many score messages a second (None: every one).
        max_queue: queued messages beyond which scores are dropped.
        linger_ms: how long close waits for unsent messages.

    Raises:
        PublishError: an endpoint cannot be bound, or CURVE is asked of a libzmq without it.
        ConfigError: a bad argument.
    """

    def __init__(
        self,
        stream: str = "cam0",
        endpoint: str = DEFAULT_ENDPOINT,
        snapshot_endpoint: str | None = DEFAULT_SNAPSHOT_ENDPOINT,
        journal: str | Path | None = None,
        curve: CurveServer | None = None,
        *,
        history: int = 1024,
        heartbeat_s: float = 0.5,
        score_rate_hz: float | None = None,
        max_queue: int = 10_000,
        linger_ms: int = 500,
    ) -> None:
        self.stream = _check_stream(stream)
        if not 0 < heartbeat_s <= 1.0:
            raise ConfigError(f"publisher heartbeat_s={heartbeat_s}: must be in (0, 1] (>= 1 Hz)")
        if history < 1:
            raise ConfigError(f"publisher history={history}: must be >= 1")
        if score_rate_hz is not None and not score_rate_hz > 0:
            raise ConfigError(f"publisher score_rate_hz={score_rate_hz}: must be > 0 or None")
        if max_queue < 1 or linger_ms < 0:
            raise ConfigError(f"publisher max_queue={max_queue} must be >= 1, linger_ms={linger_ms} >= 0")
        if curve is not None:
            require_curve()
        self.session = uuid.uuid4().hex
        self.heartbeat_s = float(heartbeat_s)
        self.history_size = int(history)
        self.score_rate_hz = score_rate_hz
        self.max_queue = int(max_queue)
        self.linger_ms = int(linger_ms)
        self.journal_path = None if journal is None else Path(journal)
        self._curve = curve

        self._lock = threading.Lock()
        self._queue: collections.deque[Any] = collections.deque()
        self._heads = dict.fromkeys(TOPICS, 0)
        self._health: dict[str, Any] = {"fps": None, "drops": 0, "face": None, "latency_s": None}
        self._closed = False
        self._io_failed = False
        self._started_ns = time.monotonic_ns()
        self._last_score_ns: int | None = None
        self.dropped_scores = 0
        self.journal_errors = 0
        self._history: dict[str, collections.deque[dict[str, Any]]] = {
            t: collections.deque(maxlen=self.history_size) for t in TOPICS
        }
        self._commands: dict[str, Callable[[], str]] = {}

        self._journal = None
        if self.journal_path is not None:
            try:
                self.journal_path.parent.mkdir(parents=True, exist_ok=True)
                self._journal = self.journal_path.open("a", encoding="utf-8")
            except OSError as exc:
                raise PublishError(f"{self.journal_path}: cannot open the journal: {exc}") from exc

        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._ctx = zmq.Context()
        self._auth = None
        self._endpoints = (endpoint, snapshot_endpoint)
        self.endpoint = endpoint
        self.snapshot_endpoint = snapshot_endpoint
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        try:
            if curve is not None:
                self._start_auth(curve)
            self._thread = threading.Thread(target=self._run, name=f"mespot-publish-{stream}", daemon=True)
            self._thread.start()
            self._ready.wait()
            if self._start_error is not None:
                raise PublishError(f"publisher {stream!r}: {self._start_error}") from self._start_error
        except BaseException:
            if hasattr(self, "_thread"):
                self._thread.join(5.0)
            self._thread_done_cleanup()
            raise

    # --------------------------------------------------------------------------------------
    # Public API (any thread)
    # --------------------------------------------------------------------------------------

    @property
    def heads(self) -> dict[str, int]:
        """The last sequence number assigned on each topic."""
        with self._lock:
            return dict(self._heads)

    def publish_event(
        self,
        item: Interval | Any,
        *,
        fps: float,
        capture_ns: int | None = None,
        frame_offset: int = 0,
        finalised_snippet: int | None = None,
        snippet_span: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """Publish a finalised interval on ``mespot.<stream>.event``.

        Args:
            item: an `Interval`, or an object with ``interval`` (and optionally ``start``,
                ``end``, ``finalised_at``, ``capture_ns``), such as engine.online.SpottedInterval.
            fps: frame rate of the interval's frame numbers (media seconds = (frame -
                frame_offset) / fps).
            capture_ns: monotonic capture time of the offset frame (latency reference);
                defaults to ``item.capture_ns``.
            frame_offset: number of the stream's first frame.
            finalised_snippet: snippet index at which the interval was finalised.
            snippet_span: ``(start, end)`` snippets, end exclusive.

        Returns:
            The message as sent (with its sequence number).
        """
        if not fps > 0:
            raise ConfigError(f"publish_event: fps must be > 0, got {fps}")
        iv = getattr(item, "interval", item)
        if not isinstance(iv, Interval):
            raise TypeError(f"publish_event needs an Interval or an object with .interval, got {item!r}")
        if capture_ns is None:
            capture_ns = getattr(item, "capture_ns", None)
        if finalised_snippet is None:
            finalised_snippet = getattr(item, "finalised_at", None)
        if snippet_span is None and hasattr(item, "start") and hasattr(item, "end"):
            snippet_span = (item.start, item.end)
        body = {
            "type": iv.type.value,
            "onset_frame": iv.onset,
            "offset_frame": iv.offset,
            "apex_frame": iv.apex,
            "onset_s": (iv.onset - frame_offset) / fps,
            "offset_s": (iv.offset - frame_offset) / fps,
            "duration_s": iv.length / fps,
            "fps": float(fps),
            "score": _num(iv.score),
            "snippet_start": None if snippet_span is None else int(snippet_span[0]),
            "snippet_end": None if snippet_span is None else int(snippet_span[1]),
            "finalised_snippet": None if finalised_snippet is None else int(finalised_snippet),
            "capture_ns": None if capture_ns is None else int(capture_ns),
            "latency_s": None,  # filled at publish time
        }
        msg = self._emit("event", body)
        assert msg is not None
        return msg

    def publish_scores(
        self,
        index: int,
        class_scores: Sequence[float],
        actionness: float | None = None,
        *,
        start_s: float | None = None,
        end_s: float | None = None,
        capture_ns: int | None = None,
    ) -> dict[str, Any] | None:
        """Publish one snippet's scores on ``mespot.<stream>.score``.

        Args:
            index: the snippet index.
            class_scores: (2,) ME, MaE scores (NaN: invalid snippet, sent as null).
            actionness: the class-agnostic score (NaN/None: null).
            start_s, end_s: media seconds the snippet covers.
            capture_ns: monotonic capture time of the snippet's newest frame.

        Returns:
            The message, or None when it was left out by ``score_rate_hz`` or dropped because
            the queue is full (counted in `dropped_scores`).
        """
        me, mae = (float(v) for v in class_scores)
        body = {
            "snippet": int(index),
            "start_s": _num(start_s),
            "end_s": _num(end_s),
            "me": _num(me),
            "mae": _num(mae),
            "actionness": _num(actionness),
            "capture_ns": None if capture_ns is None else int(capture_ns),
        }
        return self._emit("score", body)

    def publish_status(
        self,
        kind: str,
        *,
        frame_index: int = -1,
        media_time_s: float | None = None,
        capture_ns: int | None = None,
        detail: str = "",
    ) -> dict[str, Any]:
        """Publish a status event (face_found, face_lost, time_gap, source) on the status topic."""
        kind = str(getattr(kind, "value", kind))
        if kind not in STATUS_KINDS or kind == "heartbeat":
            raise ConfigError(f"status kind {kind!r}: choose one of {STATUS_KINDS[1:]}")
        body = {
            "status": kind,
            "frame_index": int(frame_index),
            "media_time_s": _num(media_time_s),
            "capture_ns": None if capture_ns is None else int(capture_ns),
            "detail": str(detail),
        }
        msg = self._emit("status", body)
        assert msg is not None
        return msg

    def publish_status_event(self, event: Any) -> dict[str, Any]:
        """Publish a `stream.pipeline.StatusEvent` (or anything with its attributes)."""
        return self.publish_status(
            event.kind,
            frame_index=event.frame_index,
            media_time_s=event.media_time_s,
            capture_ns=event.capture_ns,
            detail=event.detail,
        )

    def on_command(self, name: str, callback: Callable[[], str]) -> None:
        """Register what a command sent to the snapshot endpoint does (replacing an earlier one).

        The callback runs on the I/O thread while the asker waits for the reply: it must only set
        flags (a `threading.Event`), never block or publish. What it returns is the reply's
        ``detail``; an exception it raises makes the reply ``ok: false`` with the error.

        Args:
            name: the command's name (1-64 letters, digits, '_' or '-').
            callback: called once per request, with no arguments; returns the reply's detail.

        Raises:
            ConfigError: a bad name or a callback that is not callable.
        """
        if not isinstance(name, str) or not _COMMAND_NAME.match(name):
            raise ConfigError(f"command name {name!r}: use 1-64 letters, digits, '_' or '-'")
        if not callable(callback):
            raise ConfigError(f"command {name!r}: the callback {callback!r} is not callable")
        with self._lock:
            self._commands[name] = callback

    @property
    def commands(self) -> list[str]:
        """The names of the registered commands, sorted."""
        with self._lock:
            return sorted(self._commands)

    def set_health(
        self,
        *,
        fps: float | None = _UNSET,
        drops: int = _UNSET,
        face: bool | None = _UNSET,
        latency_s: float | None = _UNSET,
    ) -> None:
        """Update what the next heartbeats report (only the fields given change).

        Args:
            fps: measured processing rate (frames per second).
            drops: frames dropped so far by the live drop policy.
            face: whether a face is present now.
            latency_s: recent capture-to-score latency in seconds.
        """
        with self._lock:
            for name, value in (("fps", fps), ("drops", drops), ("face", face), ("latency_s", latency_s)):
                if value is not _UNSET:
                    self._health[name] = value

    def heartbeat(self) -> dict[str, Any]:
        """Publish a heartbeat now (the I/O thread sends one every `heartbeat_s` anyway)."""
        msg = self._emit("status", {"status": "heartbeat"})
        assert msg is not None
        return msg

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every message published so far is on the socket and in the journal.

        Returns:
            False when that took longer than `timeout_s`.
        """
        marker = threading.Event()
        with self._lock:
            if self._closed:
                return True
            self._queue.append(marker)
        self._wake()
        return marker.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued, close the sockets (bounded linger), fsync and close the journal."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.append(_STOP)
        self._wake()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("publisher %s: I/O thread did not stop within %.1f s", self.stream, timeout_s)
        self._thread_done_cleanup()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --------------------------------------------------------------------------------------
    # Message assembly (any thread, under the lock)
    # --------------------------------------------------------------------------------------

    def _emit(self, kind: str, body: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            if self._closed:
                raise PublishError(f"publisher {self.stream!r} is closed")
            if self._io_failed:
                raise PublishError(f"publisher {self.stream!r}: its I/O thread failed (see the log)")
            now_ns = time.monotonic_ns()
            if kind == "score":
                if len(self._queue) >= self.max_queue:
                    self.dropped_scores += 1
                    return None
                if self.score_rate_hz is not None:
                    if (
                        self._last_score_ns is not None
                        and now_ns - self._last_score_ns < 1e9 / self.score_rate_hz
                    ):
                        return None
                    self._last_score_ns = now_ns
            seq = self._heads[kind] + 1
            msg: dict[str, Any] = {
                "schema": SCHEMA,
                "kind": kind,
                "stream": self.stream,
                "session": self.session,
                "seq": seq,
                "publish_time": time.time(),
                "publish_mono_ns": now_ns,
            }
            msg.update(body)
            if kind == "event" and msg["capture_ns"] is not None:
                msg["latency_s"] = (now_ns - msg["capture_ns"]) / 1e9
            if kind == "status" and msg["status"] == "heartbeat":
                msg.update(
                    {
                        "fps": _num(self._health["fps"]),
                        "drops": int(self._health["drops"]),
                        "face": None if self._health["face"] is None else bool(self._health["face"]),
                        "latency_s": _num(self._health["latency_s"]),
                        "uptime_s": (now_ns - self._started_ns) / 1e9,
                        "dropped_scores": self.dropped_scores,
                        "heads": {**self._heads, kind: seq},
                    }
                )
            try:
                data = _encode(msg)
            except ValueError as exc:  # an infinite number
                raise ValueError(f"{kind} message cannot be sent as JSON: {exc}: {body}") from exc
            self._heads[kind] = seq
            self._queue.append((msg, data))
        self._wake()
        return dict(msg)

    def _wake(self) -> None:
        # A full pipe (the thread wakes anyway) or a closed one (after close) is fine.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # --------------------------------------------------------------------------------------
    # The I/O thread (owns every socket)
    # --------------------------------------------------------------------------------------

    def _start_auth(self, curve: CurveServer) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger(f"{__name__}.auth"))
        self._auth.start()
        if curve.client_keys is None:
            import zmq.auth

            self._auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
        else:
            allowed = _AllowedKeys(curve.client_keys)
            self._auth.configure_curve_callback(domain="*", credentials_provider=allowed)

    def _server_socket(self, kind: int, endpoint: str) -> zmq.Socket:
        sock = self._ctx.socket(kind)
        sock.linger = self.linger_ms
        if self._curve is not None:
            sock.curve_secretkey = self._curve.secret_key
            sock.curve_publickey = self._curve.public_key
            sock.curve_server = True
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise PublishError(f"cannot bind {endpoint}: {exc}") from exc
        return sock

    def _run(self) -> None:
        pub = router = None
        try:
            try:
                pub = self._server_socket(zmq.PUB, self._endpoints[0])
                pub.sndhwm = 100_000
                self.endpoint = pub.last_endpoint.decode()
                if self._endpoints[1] is not None:
                    router = self._server_socket(zmq.ROUTER, self._endpoints[1])
                    self.snapshot_endpoint = router.last_endpoint.decode()
            except BaseException as exc:
                self._start_error = exc
                return
            finally:
                self._ready.set()
            self._loop(pub, router)
        except Exception:
            self._io_failed = True
            log.exception("publisher %s: I/O thread failed", self.stream)
        finally:
            for sock in (pub, router):
                if sock is not None:
                    sock.close(self.linger_ms)
            self._close_journal()

    def _loop(self, pub: zmq.Socket, router: zmq.Socket | None) -> None:
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        if router is not None:
            poller.register(router, zmq.POLLIN)
        next_beat = time.monotonic()  # one heartbeat right away: subscribers learn the heads
        while True:
            wait_ms = max(0.0, (next_beat - time.monotonic()) * 1000.0)
            ready = dict(poller.poll(math.ceil(wait_ms)))
            if self._wake_r in ready:
                os.read(self._wake_r, 65536)
            now = time.monotonic()
            if now >= next_beat:
                with self._lock:
                    closing = self._closed
                if not closing:
                    with contextlib.suppress(PublishError):  # closed meanwhile
                        self.heartbeat()
                next_beat += self.heartbeat_s
                if next_beat < now:  # fell behind (a stalled machine): do not burst
                    next_beat = now + self.heartbeat_s
            stop = self._send_queued(pub)
            if router is not None and router in ready:
                self._serve_snapshots(router)
            if stop:
                return

    def _send_queued(self, pub: zmq.Socket) -> bool:
        """Send everything queued; True when the stop marker was reached."""
        while True:
            try:
                item = self._queue.popleft()
            except IndexError:
                return False
            if item is _STOP:
                return True
            if isinstance(item, threading.Event):  # a flush() waiting
                item.set()
                continue
            msg, data = item
            kind = msg["kind"]
            self._history[kind].append(msg)
            if self._journal is not None and kind in _JOURNALLED and msg.get("status") != "heartbeat":
                try:
                    self._journal.write(data.decode() + "\n")
                    self._journal.flush()
                except (OSError, ValueError) as exc:
                    self.journal_errors += 1
                    log.error("publisher %s: journal %s: %s", self.stream, self.journal_path, exc)
            pub.send_multipart([topic_of(self.stream, kind), data])

    def _serve_snapshots(self, router: zmq.Socket) -> None:
        while True:
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue
            envelope, payload = frames[:-1], frames[-1]
            reply = self._command_reply(payload) or self._snapshot_reply(payload)
            try:
                router.send_multipart([*envelope, _encode(reply)], zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                log.warning("publisher %s: snapshot reply not sent: %s", self.stream, exc)

    def _command_reply(self, payload: bytes) -> dict[str, Any] | None:
        """The reply to a command request; None when the payload is not one (a snapshot request)."""
        try:
            req = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(req, dict) or req.get("kind") != "command":
            return None
        rid = req.get("request_id")
        name = req.get("command")
        reply: dict[str, Any] = {
            "schema": SCHEMA,
            "kind": "command_reply",
            "stream": self.stream,
            "session": self.session,
            "command": name if isinstance(name, str) else None,
            "request_id": rid if isinstance(rid, str | int) and not isinstance(rid, bool) else None,
            "ok": False,
            "detail": "",
            "error": None,
        }
        with self._lock:
            commands = dict(self._commands)
        if req.get("stream") not in (None, self.stream):
            reply["error"] = f"this endpoint serves stream {self.stream!r}, not {req.get('stream')!r}"
        elif not isinstance(name, str) or name not in commands:
            known = ", ".join(sorted(commands)) or "none"
            reply["error"] = f"unknown command {name!r}; this publisher knows: {known}"
        else:
            try:
                reply["detail"] = str(commands[name]())
                reply["ok"] = True
            except Exception as exc:
                log.exception("publisher %s: command %s failed", self.stream, name)
                reply["error"] = f"command {name!r} failed: {exc!r}"
        return reply

    def _snapshot_reply(self, payload: bytes) -> dict[str, Any]:
        reply: dict[str, Any] = {
            "schema": SCHEMA,
            "kind": "snapshot",
            "stream": self.stream,
            "session": self.session,
            "request_id": None,
            "topic": None,
            "since": 0,
            "oldest": None,
            "head": 0,
            "complete": False,
            "messages": [],
            "error": None,
        }
        try:
            req = json.loads(payload)
            if not isinstance(req, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            reply["error"] = f"bad request: {exc}"
            return reply
        rid = req.get("request_id")
        reply["request_id"] = rid if isinstance(rid, str | int) and not isinstance(rid, bool) else None
        topic, since = req.get("topic"), req.get("since", 0)
        if req.get("kind") != "snapshot_request":
            reply["error"] = "bad request: kind must be 'snapshot_request'"
        elif req.get("stream") not in (None, self.stream):
            reply["error"] = f"this endpoint serves stream {self.stream!r}, not {req.get('stream')!r}"
        elif topic not in TOPICS:
            reply["error"] = f"bad request: topic must be one of {list(TOPICS)}"
        elif isinstance(since, bool) or not isinstance(since, int) or since < 0:
            reply["error"] = "bad request: since must be an integer >= 0"
        if reply["error"] is not None:
            return reply
        if req.get("session") not in (None, self.session):
            since = 0  # the asker knew an earlier session: everything of this one is new to it
        history = self._history[topic]
        head = history[-1]["seq"] if history else 0
        oldest = history[0]["seq"] if history else None
        reply.update(
            {
                "topic": topic,
                "since": since,
                "oldest": oldest,
                "head": head,
                "complete": oldest is None or since + 1 >= oldest,
                "messages": [m for m in history if m["seq"] > since],
            }
        )
        return reply

    def _close_journal(self) -> None:
        if self._journal is None:
            return
        try:
            self._journal.flush()
            os.fsync(self._journal.fileno())
        except (OSError, ValueError) as exc:
            log.error("publisher %s: journal %s: %s", self.stream, self.journal_path, exc)
        finally:
            self._journal.close()
            self._journal = None

    def _thread_done_cleanup(self) -> None:
        """Release what the constructor made (after the I/O thread has ended)."""
        thread = getattr(self, "_thread", None)
        if thread is not None and thread.is_alive():
            return  # cannot safely close sockets owned by a live thread
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if not self._ctx.closed:
            self._ctx.term()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1
        self._close_journal()
