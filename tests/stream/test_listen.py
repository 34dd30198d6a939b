"""The listener: late joiners, dropped connections, restarts, and a subscriber in another process."""

from __future__ import annotations

import argparse
import json
import queue
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from engine.cli.listen import add_parser as add_listen_parser
from engine.cli.listen import run_listen
from stream.errors import ConfigError
from stream.intervals import ExpressionType, Interval
from stream.listen import GapReport, Listener, Received, SessionChange
from stream.publish import Publisher

pytestmark = pytest.mark.usefixtures("no_leaked_threads")

REPO = Path(__file__).resolve().parents[2]
ANY_PORT = "tcp://127.0.0.1:*"


def me(onset: int) -> Interval:
    return Interval(onset, onset + 9, ExpressionType.ME, apex=onset + 4, score=0.6)


def collect(listener: Listener, until, timeout_s: float = 8.0) -> list:
    """Items until `until(items)` holds (or the time is up)."""
    items: list = []
    deadline = time.monotonic() + timeout_s
    while not until(items) and (left := deadline - time.monotonic()) > 0:
        item = listener.recv(min(left, 0.2))
        if item is not None:
            items.append(item)
    return items


def events(items: list) -> list[Received]:
    return [i for i in items if isinstance(i, Received) and i.kind == "event"]


def n_events(k: int):
    return lambda items: len(events(items)) >= k


class TcpProxy:
    """Forwards a loopback port to a target port; `stop` cuts every connection (a dropped link)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR on POSIX
        self.port = self._server.getsockname()[1]
        self._stop_r, self._stop_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="test-proxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop_w.send(b"x")
        assert self._thread is not None
        self._thread.join(5)
        self._stop_w.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._server, selectors.EVENT_READ)
        sel.register(self._stop_r, selectors.EVENT_READ)
        peer: dict[socket.socket, socket.socket] = {}
        try:
            while True:
                for key, _ in sel.select():
                    sock = key.fileobj
                    if sock is self._stop_r:
                        return
                    if sock is self._server:
                        down, _ = self._server.accept()
                        up = socket.create_connection(("127.0.0.1", self.target_port))
                        peer[down], peer[up] = up, down
                        sel.register(down, selectors.EVENT_READ)
                        sel.register(up, selectors.EVENT_READ)
                        continue
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        peer[sock].sendall(data)
                    else:
                        other = peer.pop(sock)
                        peer.pop(other, None)
                        for s in (sock, other):
                            sel.unregister(s)
                            s.close()
        finally:
            for s in [*peer, self._server, self._stop_r]:
                s.close()
            sel.close()


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_late_joiner_recovers_missed_events_then_goes_live() -> None:
    with Publisher("cam0", ANY_PORT, ANY_PORT) as pub:
        for k in range(5):
            pub.publish_event(me(20 * k), fps=30.0)
        with Listener(pub.endpoint, pub.snapshot_endpoint, topics=["event"]) as listener:
            items = collect(listener, n_events(5))
            assert isinstance(items[0], SessionChange) and items[0].new == pub.session
            gap = next(i for i in items if isinstance(i, GapReport))
            assert (gap.first, gap.last, gap.recovered, gap.lost, gap.reason) == (1, 5, 5, 0, "late join")
            assert [(e.seq, e.recovered) for e in events(items)] == [(k, True) for k in range(1, 6)]
            # Once a heartbeat has come over the subscription, new events arrive live.
            collect(listener, lambda items: listener.last_heard is not None)
            pub.publish_event(me(200), fps=30.0)
            later = collect(listener, n_events(1))
            # Live now, and nothing twice (heartbeats keep coming meanwhile).
            later += collect(listener, lambda items: False, timeout_s=0.8)
            assert [(e.seq, e.recovered) for e in events(later)] == [(6, False)]
            assert not any(isinstance(i, GapReport) for i in later)
            assert listener.state()[("cam0", "event")] == (pub.session, 6)


def test_short_history_reports_the_lost_ones() -> None:
    with Publisher("cam0", ANY_PORT, ANY_PORT, history=3) as pub:
        for k in range(7):
            pub.publish_event(me(20 * k), fps=30.0)
        with Listener(pub.endpoint, pub.snapshot_endpoint, topics=["event"]) as listener:
            items = collect(listener, n_events(3))
    gap = next(i for i in items if isinstance(i, GapReport))
    assert (gap.first, gap.last, gap.recovered, gap.lost) == (1, 7, 3, 4)
    assert [e.seq for e in events(items)] == [5, 6, 7]


def test_dropped_connection_gap_is_detected_and_recovered() -> None:
    with Publisher("cam0", ANY_PORT, ANY_PORT, heartbeat_s=0.25) as pub:
        proxy = TcpProxy(port_of(pub.endpoint))
        proxy.start()
        try:
            via_proxy = f"tcp://127.0.0.1:{proxy.port}"
            with Listener(via_proxy, pub.snapshot_endpoint, topics=["event"]) as listener:
                # Joined: a heartbeat went through the proxy (the listener takes status for liveness).
                collect(listener, lambda items: listener.last_heard is not None)
                pub.publish_event(me(0), fps=30.0)
                first = collect(listener, n_events(1))
                assert [(e.seq, e.recovered) for e in events(first)] == [(1, False)]

                proxy.stop()  # the link drops; these three go nowhere
                time.sleep(0.3)
                for k in range(1, 4):
                    pub.publish_event(me(20 * k), fps=30.0)
                proxy.start()  # same port: the SUB reconnects by itself

                # The next heartbeat's heads reveal the gap; the snapshot endpoint fills it. The SUB's
                # reconnection through the proxy can take seconds on a loaded machine: a long bound
                # (the wait ends as soon as the three events are in).
                items = collect(listener, n_events(3), timeout_s=30.0)
                gaps = [i for i in items if isinstance(i, GapReport)]
                assert len(gaps) == 1 and gaps[0].topic == "event"
                assert (gaps[0].first, gaps[0].last, gaps[0].recovered, gaps[0].lost) == (2, 4, 3, 0)
                assert [(e.seq, e.recovered) for e in events(items)] == [(2, True), (3, True), (4, True)]
                pub.publish_event(me(100), fps=30.0)
                assert [(e.seq, e.recovered) for e in events(collect(listener, n_events(1)))] == [(5, False)]
        finally:
            proxy.stop()


def test_publisher_restart_is_a_new_session() -> None:
    pub = Publisher("cam0", ANY_PORT, ANY_PORT)
    endpoint, snapshot, old = pub.endpoint, pub.snapshot_endpoint, pub.session
    with Listener(endpoint, snapshot, topics=["event"]) as listener:
        pub.publish_event(me(0), fps=30.0)
        assert [e.seq for e in events(collect(listener, n_events(1)))] == [1]
        pub.close()
        with Publisher("cam0", endpoint, snapshot) as pub2:
            pub2.publish_event(me(50), fps=30.0)
            pub2.publish_event(me(80), fps=30.0)
            items = collect(listener, n_events(2))
    changes = [i for i in items if isinstance(i, SessionChange)]
    assert [(c.old, c.new) for c in changes] == [(old, pub2.session)]
    got = events(items)
    assert [e.seq for e in got] == [1, 2] and {e.message["session"] for e in got} == {pub2.session}


def test_without_snapshot_gaps_are_reported_lost() -> None:
    with Publisher("cam0", ANY_PORT, None, heartbeat_s=0.25) as pub:
        for k in range(2):
            pub.publish_event(me(20 * k), fps=30.0)
        assert pub.flush()  # sent before the listener exists: it can only learn of them from heads
        with Listener(pub.endpoint, None, topics=["event"]) as listener:
            items = collect(listener, lambda items: any(isinstance(i, GapReport) for i in items))
    gap = next(i for i in items if isinstance(i, GapReport))
    assert (gap.first, gap.last, gap.recovered, gap.lost) == (1, 2, 0, 2)
    assert "no snapshot endpoint" in gap.reason


def test_subscriber_in_another_process() -> None:
    with Publisher("cam0", ANY_PORT, ANY_PORT) as pub:
        pub.publish_event(me(0), fps=30.0)  # before the subscriber exists: recovered by snapshot
        cmd = [
            sys.executable,
            "-m",
            "engine.cli",
            "listen",
            pub.endpoint,
            "--snapshot",
            pub.snapshot_endpoint,
        ]
        cmd += ["--topics", "event", "--json", "--count", "3", "--timeout", "20"]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
        reader.start()
        printed: list[dict] = []
        try:
            # The catch-up (event 1) shows the subscriber is up; then two events published live.
            while not any(m.get("seq") == 1 and m["kind"] == "event" for m in printed):
                printed.append(json.loads(lines.get(timeout=20)))
            pub.publish_event(me(40), fps=30.0)
            pub.publish_event(me(80), fps=30.0)
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(5)
            err = proc.stderr.read()
            proc.stdout.close()
            proc.stderr.close()
    while not lines.empty():
        printed.append(json.loads(lines.get()))
    assert proc.returncode == 0, err
    got = [m for m in printed if m["kind"] == "event"]
    assert [m["seq"] for m in got] == [1, 2, 3]
    assert [m["onset_frame"] for m in got] == [0, 40, 80]
    assert all(m["session"] == pub.session for m in got)


def test_cli_prints_events_and_gaps(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="mespot")
    add_listen_parser(parser.add_subparsers(dest="command"))
    with Publisher("cam0", ANY_PORT, ANY_PORT) as pub:
        pub.publish_event(me(30), fps=30.0)
        pub.publish_status("face_lost", frame_index=12, media_time_s=0.4, detail="no face")
        args = parser.parse_args(["listen", pub.endpoint, "--snapshot", pub.snapshot_endpoint])
        args.count, args.timeout = 1, 10.0
        assert args.func(args) == 0
        # --count not reached within --timeout: exit status 1.
        args = parser.parse_args(["listen", pub.endpoint, "--no-snapshot", "--topics", "event"])
        args.count, args.timeout = 5, 0.5
        assert args.func(args) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("cam0 gap event #1-1: recovered 1, lost 0") for line in out)
    assert any("#1 (recovered) event me frames 30-39 (1.000-1.300 s) score 0.600" in line for line in out)


def test_cli_sends_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="mespot")
    add_listen_parser(parser.add_subparsers(dest="command"))
    with Publisher("cam0", ANY_PORT, ANY_PORT, allow_local_commands=True) as pub:
        pub.on_command("neutral_restart", lambda: "collecting afresh")
        args = parser.parse_args(["listen", pub.endpoint, "--snapshot", pub.snapshot_endpoint])
        assert args.command == "listen"
        base = ["listen", "--snapshot", pub.snapshot_endpoint, "--timeout", "5"]
        assert run_listen(parser.parse_args([*base, "--command", "neutral_restart"])) == 0
        assert run_listen(parser.parse_args([*base, "--command", "reboot", "--json"])) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "cam0 command neutral_restart: ok: collecting afresh"
    refused = json.loads(out[1])
    assert (
        refused["kind"] == "command_reply"
        and refused["ok"] is False
        and "neutral_restart" in refused["error"]
    )
    # Nothing answers: exit status 2.
    args = parser.parse_args(
        ["listen", "tcp://127.0.0.1:9", "--command", "neutral_restart", "--timeout", "0.3"]
    )
    assert run_listen(args) == 2
    assert "did not answer" in capsys.readouterr().err


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE (no libsodium)")
def test_curve_from_the_command_line_and_authenticated_commands(tmp_path, capsys) -> None:
    """`mespot live --curve-secret-key --curve-public-keys` and `mespot listen` with the client's
    keys: an allowed client may send commands without --allow-local-commands; a stranger gets nothing."""
    import zmq.auth

    from engine.cli.live import add_live_arguments, curve_server_from_args

    zmq.auth.create_certificates(tmp_path, "server")
    clients = tmp_path / "clients"
    clients.mkdir()
    zmq.auth.create_certificates(clients, "client")
    (clients / "client.key_secret").rename(tmp_path / "client.key_secret")
    zmq.auth.create_certificates(tmp_path, "stranger")
    live = argparse.ArgumentParser()
    add_live_arguments(live)
    live_args = live.parse_args(
        ["--curve-secret-key", str(tmp_path / "server.key_secret"), "--curve-public-keys", str(clients)]
    )
    with pytest.raises(ConfigError, match="--curve-public-keys needs --curve-secret-key"):
        curve_server_from_args(live.parse_args(["--curve-public-keys", str(clients)]))
    parser = argparse.ArgumentParser(prog="mespot")
    add_listen_parser(parser.add_subparsers(dest="command"))
    with Publisher("cam0", ANY_PORT, ANY_PORT, curve=curve_server_from_args(live_args)) as pub:
        pub.on_command("neutral_restart", lambda: "collecting afresh")
        base = ["listen", pub.endpoint, "--snapshot", pub.snapshot_endpoint, "--command", "neutral_restart"]
        keys = ["--curve-public-keys", str(tmp_path / "server.key")]
        ok = [*base, *keys, "--curve-secret-key", str(tmp_path / "client.key_secret"), "--timeout", "5"]
        assert run_listen(parser.parse_args(ok)) == 0
        assert capsys.readouterr().out.strip() == "cam0 command neutral_restart: ok: collecting afresh"
        stranger = [*base, *keys, "--curve-secret-key", str(tmp_path / "stranger.key_secret")]
        assert run_listen(parser.parse_args([*stranger, "--timeout", "1"])) == 2
        assert run_listen(parser.parse_args([*base, "--timeout", "1"])) == 2  # plain TCP: nothing
