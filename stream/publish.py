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
"Commands"). Commands are refused unless the client is authenticated (CURVE with a list of allowed
client keys) or the publisher was told to take them from localhost (``allow_local_commands``).

No request can stop the I/O thread: every request is at most ``max_request_bytes`` (larger ones
get an error reply naming the limit; ZeroMQ closes the connection of one over four times the limit
before it is read), anything it holds is answered with a reply (never an exception), requests wait
in a bounded queue (the oldest dropped and counted on the status topic), at most
``requests_per_poll`` are served between two rounds of publishing and heartbeats, and a snapshot
reply holds at most ``snapshot_max_messages`` messages (pre-encoded, so a reply costs a join).

The journal is appended one whole line per write (``journal_fsync``: fsynced before the message is
sent). A torn last line (a crash or a full disk) is cut off when the journal is reopened. A write
error ends journalling: it is logged, published as a ``source`` status event naming the first
message the journal lacks, and passed to ``on_journal_error``; messages still go out on the wire.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import itertools
import json
import logging
import math
import os
import re
import stat
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
from stream.frame import StatusKind
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
# "heartbeat" (the publisher's own) plus the pipeline's status kinds.
STATUS_KINDS = ("heartbeat", *(k.value for k in StatusKind))
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
DEFAULT_SNAPSHOT_ENDPOINT = "tcp://127.0.0.1:5557"
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_COMMAND_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_JOURNALLED = ("event", "status")  # heartbeats excepted
_UNSET: Any = object()
_STOP = object()
_LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1", "localhost"})
_HARD_LIMIT_FACTOR = 4  # ZeroMQ drops (unread) any request frame over this many times the limit
_SERVE_BUDGET_S = 0.01  # at most this long serving requests between two rounds of publishing
_DRAIN_PER_POLL = 256  # requests taken off the socket per round (cheap: no parsing)
_DROP_REPORT_S = 1.0  # at most one "requests dropped" status event a second


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


def _request_id(rid: object) -> str | int | None:
    """A request's id as a reply echoes it: a string or an integer, else null."""
    return rid if isinstance(rid, str | int) and not isinstance(rid, bool) else None


def snapshot_reply_base(stream: str, session: str, rid: object, error: str | None) -> dict[str, Any]:
    """An empty snapshot reply (no messages), with `error` when the request was refused."""
    return {
        "schema": SCHEMA,
        "kind": "snapshot",
        "stream": stream,
        "session": session,
        "request_id": _request_id(rid),
        "topic": None,
        "since": 0,
        "oldest": None,
        "head": 0,
        "complete": False,
        "messages": [],
        "error": error,
    }


def _shown(value: object, limit: int = 80) -> str:
    """A request's value as an error message shows it: short, whatever a client sent."""
    if isinstance(value, str | int | float | bool) or value is None:
        text = repr(value)
    else:
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def open_journal(path: Path) -> tuple[int, int]:
    """Open a journal for appending, cutting off a torn last line (a crash or a full disk).

    Returns:
        (the open file descriptor, bytes cut off).

    Raises:
        OSError: it cannot be opened or repaired.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return fd, 0  # /dev/full, a pipe: nothing to repair
        end = st.st_size
        if os.pread(fd, 1, end - 1) == b"\n":
            return fd, 0
        pos = end
        while pos > 0:  # back to the last end of line (whole lines before it are intact)
            start = max(0, pos - 65536)
            chunk = os.pread(fd, pos - start, start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                pos = start + cut + 1
                break
            pos = start
        os.ftruncate(fd, pos)
        return fd, end - pos
    except BaseException:
        os.close(fd)
        raise


def journal_status_line(path: str | Path, stream: str, detail: str) -> None:
    """Append one ``source`` status message to a journal without a publisher (a run that stopped
    before its publisher started); the line is a valid ``mespot.events/1`` message of its own session.

    Raises:
        OSError: the journal cannot be written.
    """
    now_ns = time.monotonic_ns()
    msg = {
        "schema": SCHEMA,
        "kind": "status",
        "stream": _check_stream(stream),
        "session": uuid.uuid4().hex,
        "seq": 1,
        "publish_time": time.time(),
        "publish_mono_ns": now_ns,
        "status": "source",
        "frame_index": -1,
        "media_time_s": None,
        "capture_ns": now_ns,
        "detail": str(detail),
    }
    journal = Path(path)
    journal.parent.mkdir(parents=True, exist_ok=True)
    fd, _ = open_journal(journal)
    try:
        _write_all(fd, _encode(msg) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "write wrote nothing")
        view = view[n:]


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
        journal: a JSON-lines file every event and status message is appended to (one write per
            line, fsynced on close); None: no journal.
        curve: CURVE keys; None: plain TCP.
        history: messages kept per topic for snapshots.
        heartbeat_s: seconds between heartbeats (<= 1).
        score_rate_hz: send at most this many score messages a second (None: every one).
        max_queue: queued messages beyond which scores are dropped.
        linger_ms: how long close waits for unsent messages.
        journal_fsync: fsync the journal after every line, before the message is sent (every
            published event is on disk; costs an fsync per event and status message).
        on_journal_error: called once (on the I/O thread, with the error text) when the journal
            cannot be written; it must only set flags. Journalling stops, publishing goes on.
        allow_local_commands: take commands from unauthenticated clients on localhost (the
            loopback address, ipc://, inproc://); without it, commands need CURVE with
            ``client_keys`` (every client authenticated).
        max_request_bytes: the largest request the snapshot endpoint reads; a larger one gets an
            error reply naming the limit.
        max_pending_requests: requests waiting to be served; beyond it the oldest are dropped
            (counted in `dropped_requests` and reported on the status topic).
        requests_per_poll: requests served between two rounds of publishing and heartbeats.
        snapshot_max_messages: messages in one snapshot reply (a client pages on with ``since``).

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
        journal_fsync: bool = False,
        on_journal_error: Callable[[str], None] | None = None,
        allow_local_commands: bool = False,
        max_request_bytes: int = 65_536,
        max_pending_requests: int = 64,
        requests_per_poll: int = 8,
        snapshot_max_messages: int = 256,
    ) -> None:
        self.stream = _check_stream(stream)
        for name, value, low in (
            ("max_request_bytes", max_request_bytes, 256),
            ("max_pending_requests", max_pending_requests, 1),
            ("requests_per_poll", requests_per_poll, 1),
            ("snapshot_max_messages", snapshot_max_messages, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"publisher {name}={value!r}: must be an integer >= {low}")
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
        self.journal_fsync = bool(journal_fsync)
        self.journal_error: str | None = None  # why the journal stopped, once it did
        self.journal_repaired = 0  # bytes of a torn last line cut off when it was opened
        self._on_journal_error = on_journal_error
        self.allow_local_commands = bool(allow_local_commands)
        self.max_request_bytes = max_request_bytes
        self.max_pending_requests = max_pending_requests
        self.requests_per_poll = requests_per_poll
        self.snapshot_max_messages = snapshot_max_messages
        self._router_tcp = False
        self.dropped_requests = 0  # oldest requests dropped from a full queue, or replies not sent
        self._reported_drops = 0
        self._next_drop_report = 0.0
        # (reply envelope, request JSON or None, why it is refused, peer address (tcp only))
        self._pending: collections.deque[tuple[list[bytes], bytes | None, str | None, str | None]] = (
            collections.deque()
        )
        # (seq, the message's JSON as sent): a snapshot reply joins these, nothing is re-encoded
        self._history: dict[str, collections.deque[tuple[int, bytes]]] = {
            t: collections.deque(maxlen=self.history_size) for t in TOPICS
        }
        self._commands: dict[str, Callable[[], str]] = {}

        self._journal: int | None = None  # a file descriptor: one os.write per line, no buffer
        self._journal_size = 0
        if self.journal_path is not None:
            try:
                self.journal_path.parent.mkdir(parents=True, exist_ok=True)
                self._journal, self.journal_repaired = open_journal(self.journal_path)
                self._journal_size = os.fstat(self._journal).st_size
            except OSError as exc:
                raise PublishError(f"{self.journal_path}: cannot open the journal: {exc}") from exc
            if self.journal_repaired:
                log.warning(
                    "publisher %s: journal %s: its last line was torn (a crash or a full disk); "
                    "cut off %d bytes so that every line is a whole message",
                    stream,
                    self.journal_path,
                    self.journal_repaired,
                )

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
        """Publish a `stream.frame.StatusEvent` (or anything with its attributes)."""
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

    def _emit(self, kind: str, body: dict[str, Any], *, internal: bool = False) -> dict[str, Any] | None:
        with self._lock:
            if self._closed and not internal:
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
            if self._closed and self._queue and self._queue[-1] is _STOP:
                # the I/O thread's own report while closing: it goes out before the end
                self._queue.insert(len(self._queue) - 1, (msg, data))
            else:
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
        if kind == zmq.ROUTER:
            # Memory stays bounded whatever clients send: a frame over the hard limit is never read
            # (ZeroMQ drops the connection), few requests wait per client, few replies are queued
            # for a client that does not read them, and a reply to a gone client fails at once.
            sock.maxmsgsize = _HARD_LIMIT_FACTOR * self.max_request_bytes
            sock.rcvhwm = max(16, self.max_pending_requests)
            sock.sndhwm = 16
            sock.router_mandatory = True
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
                    self._router_tcp = self.snapshot_endpoint.startswith("tcp://")
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
            # Requests still waiting: look at the sockets and come straight back to them.
            wait_ms = 0.0 if self._pending else max(0.0, (next_beat - time.monotonic()) * 1000.0)
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
            if router is not None:
                if router in ready:
                    self._take_requests(router)
                self._serve_requests(router)
                self._report_drops(now)
            if stop:
                self._send_queued(pub)  # a report made while closing
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
            self._history[kind].append((msg["seq"], data))
            if self._journal is not None and kind in _JOURNALLED and msg.get("status") != "heartbeat":
                self._journal_append(msg, data)  # before sending: with fsync, on disk first
            pub.send_multipart([topic_of(self.stream, kind), data])

    # -- the journal (I/O thread) --------------------------------------------------------------

    def _journal_append(self, msg: dict[str, Any], data: bytes) -> None:
        assert self._journal is not None
        try:
            _write_all(self._journal, data + b"\n")
            if self.journal_fsync:
                os.fsync(self._journal)
            self._journal_size += len(data) + 1
        except OSError as exc:
            self._journal_failed(msg, exc)

    def _journal_failed(self, msg: dict[str, Any], exc: OSError) -> None:
        """A write failed: cut the torn line, stop journalling, say so everywhere."""
        fd, self._journal = self._journal, None
        self.journal_errors += 1
        if fd is not None:
            with contextlib.suppress(OSError):  # a full disk still lets a file shrink
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.ftruncate(fd, self._journal_size)
            with contextlib.suppress(OSError):
                os.close(fd)
        problem = exc.strerror or str(exc)
        self.journal_error = (
            f"journal {self.journal_path}: write failed ({problem}); it ends before {msg['kind']} "
            f"#{msg['seq']} of session {self.session}: that message and every later one are on the "
            "wire only"
        )
        log.error("publisher %s: %s", self.stream, self.journal_error)
        self._source_status(self.journal_error)
        if self._on_journal_error is not None:
            try:
                self._on_journal_error(self.journal_error)
            except Exception:
                log.exception("publisher %s: on_journal_error failed", self.stream)

    # -- the snapshot endpoint (I/O thread) ----------------------------------------------------

    def _take_requests(self, router: zmq.Socket) -> None:
        """Move waiting requests off the socket into the bounded queue (oldest dropped)."""
        for _ in range(_DRAIN_PER_POLL):
            try:
                frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            identity, rest = frames[0].bytes, frames[1:]
            size = sum(len(f) for f in rest)
            delimited = bool(rest) and len(rest[0]) == 0
            envelope = [identity, b""] if delimited else [identity]
            body = rest[1:] if delimited else rest
            # At most one request frame is kept (bounded by max_request_bytes); anything else is
            # answered from its size and frame count alone.
            payload, problem = None, None
            if size > self.max_request_bytes:
                problem = (
                    f"bad request: {size} bytes, over the limit of {self.max_request_bytes} bytes "
                    "(max_request_bytes)"
                )
            elif len(body) != 1:
                problem = f"bad request: {len(body)} frames; send one JSON frame (after an empty delimiter)"
            else:
                payload = body[0].bytes
            peer = None
            if self._router_tcp:
                try:
                    peer = frames[-1].get("Peer-Address") or "?"
                except zmq.ZMQError:
                    peer = "?"
            if len(self._pending) >= self.max_pending_requests:
                self._pending.popleft()
                self.dropped_requests += 1
            self._pending.append((envelope, payload, problem, peer))

    def _serve_requests(self, router: zmq.Socket) -> None:
        """Answer queued requests: at most `requests_per_poll`, for at most _SERVE_BUDGET_S."""
        t0 = time.monotonic()
        for _ in range(self.requests_per_poll):
            if not self._pending or time.monotonic() - t0 > _SERVE_BUDGET_S:
                return
            envelope, payload, problem, peer = self._pending.popleft()
            try:
                data = self._reply(payload, problem, peer)
            except Exception as exc:  # never: but a request must not end the I/O thread
                log.exception("publisher %s: request not answered", self.stream)
                data = _encode(self._snapshot_base(None, f"internal error: {exc!r}"))
            try:
                router.send_multipart([*envelope, data], zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # gone, or not reading its replies
                self.dropped_requests += 1
                log.info("publisher %s: reply not sent: %s", self.stream, exc)

    def _report_drops(self, now: float) -> None:
        """A status event when requests were dropped (at most one a second)."""
        new = self.dropped_requests - self._reported_drops
        if new <= 0 or now < self._next_drop_report:
            return
        self._reported_drops = self.dropped_requests
        self._next_drop_report = now + _DROP_REPORT_S
        self._source_status(
            f"snapshot endpoint: {new} requests dropped ({self.dropped_requests} in all): "
            f"more came than it serves (the oldest go when {self.max_pending_requests} wait, "
            "or a client does not read its replies)"
        )

    def _source_status(self, detail: str) -> None:
        """A status event about the publisher itself (journal, endpoint), from its I/O thread;
        nothing if that thread has failed meanwhile (its failure is logged already)."""
        with contextlib.suppress(PublishError):
            self._emit(
                "status",
                {
                    "status": "source",
                    "frame_index": -1,
                    "media_time_s": None,
                    "capture_ns": time.monotonic_ns(),
                    "detail": detail,
                },
                internal=True,
            )

    def _reply(self, payload: bytes | None, problem: str | None, peer: str | None) -> bytes:
        """The encoded reply to one request (`_take_requests` found `problem`, or `payload`)."""
        if payload is None:
            return _encode(self._snapshot_base(None, problem or "bad request"))
        try:
            req = json.loads(payload)
        except RecursionError:
            return _encode(self._snapshot_base(None, "bad request: JSON nested too deeply"))
        except ValueError as exc:  # not JSON, not UTF-8
            return _encode(self._snapshot_base(None, f"bad request: {exc}"))
        if not isinstance(req, dict):
            return _encode(self._snapshot_base(None, "bad request: not a JSON object"))
        if req.get("kind") == "command":
            return _encode(self._command_reply(req, peer))
        return self._snapshot_reply(req)

    def _authorised(self, peer: str | None) -> str | None:
        """Why a command from `peer` is refused, or None when it may run."""
        if self._curve is not None and self._curve.client_keys is not None:
            return None  # CURVE let in only clients with an allowed key
        if self.allow_local_commands and (peer is None or peer in _LOOPBACK):  # None: ipc, inproc
            return None
        if self.allow_local_commands:
            return f"commands are taken from localhost only, not from {_shown(peer)}"
        return (
            "commands need an authenticated client (CURVE with allowed client keys: "
            "--curve-secret-key and --curve-public-keys), or the publisher started with "
            "--allow-local-commands (allow_local_commands=True) for unauthenticated ones on localhost"
        )

    def _command_reply(self, req: dict[str, Any], peer: str | None) -> dict[str, Any]:
        """The reply to a command request."""
        rid = req.get("request_id")
        name = req.get("command")
        reply: dict[str, Any] = {
            "schema": SCHEMA,
            "kind": "command_reply",
            "stream": self.stream,
            "session": self.session,
            "command": name if isinstance(name, str) and _COMMAND_NAME.match(name) else None,
            "request_id": _request_id(rid),
            "ok": False,
            "detail": "",
            "error": None,
        }
        with self._lock:
            commands = dict(self._commands)
        refused = self._authorised(peer)
        if req.get("stream") not in (None, self.stream):
            reply["error"] = f"this endpoint serves stream {self.stream!r}, not {_shown(req.get('stream'))}"
        elif refused is not None:
            reply["error"] = f"not authorised: {refused}"
        elif not isinstance(name, str) or name not in commands:
            known = ", ".join(sorted(commands)) or "none"
            reply["error"] = f"unknown command {_shown(name)}; this publisher knows: {known}"
        else:
            try:
                reply["detail"] = str(commands[name]())
                reply["ok"] = True
            except Exception as exc:
                log.exception("publisher %s: command %s failed", self.stream, name)
                reply["error"] = f"command {name!r} failed: {exc!r}"
        return reply

    def _snapshot_base(self, rid: object, error: str | None) -> dict[str, Any]:
        return snapshot_reply_base(self.stream, self.session, rid, error)

    def _snapshot_reply(self, req: dict[str, Any]) -> bytes:
        topic, since = req.get("topic"), req.get("since", 0)
        error = None
        if req.get("kind") != "snapshot_request":
            error = "bad request: kind must be 'snapshot_request' or 'command'"
        elif req.get("stream") not in (None, self.stream):
            error = f"this endpoint serves stream {self.stream!r}, not {_shown(req.get('stream'))}"
        elif not isinstance(topic, str) or topic not in TOPICS:
            error = f"bad request: topic must be one of {list(TOPICS)}"
        elif isinstance(since, bool) or not isinstance(since, int) or since < 0:
            error = "bad request: since must be an integer >= 0"
        if error is not None:
            return _encode(self._snapshot_base(req.get("request_id"), error))
        if req.get("session") not in (None, self.session):
            since = 0  # the asker knew an earlier session: everything of this one is new to it
        history = self._history[topic]
        head = history[-1][0] if history else 0
        oldest = history[0][0] if history else None
        # The oldest `snapshot_max_messages` after `since`: the asker pages on from the last one.
        skip = 0 if oldest is None else max(0, min(len(history), since + 1 - oldest))
        picked = [data for _, data in itertools.islice(history, skip, skip + self.snapshot_max_messages)]
        reply = self._snapshot_base(req.get("request_id"), None)
        del reply["messages"], reply["error"]
        reply.update(
            {
                "topic": topic,
                "since": since,
                "oldest": oldest,
                "head": head,
                "complete": oldest is None or since + 1 >= oldest,
            }
        )
        # The messages as they were sent, joined: no message is decoded or encoded again.
        return _encode(reply)[:-1] + b',"messages":[' + b",".join(picked) + b'],"error":null}'

    def _close_journal(self) -> None:
        fd, self._journal = self._journal, None
        if fd is None:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EROFS):  # a device or pipe: nothing to sync
                log.error("publisher %s: journal %s: %s", self.stream, self.journal_path, exc)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

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
