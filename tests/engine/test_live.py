"""The live runner end to end: real video, real processes, real sockets (engine/live.py, run_live.py).

The end-to-end test replays a synthetic recording with known expressions through ``run_live.py``
in a subprocess, while ``mespot listen`` in another process subscribes; a third
subscriber joins after every event was published and gets them through the snapshot endpoint.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.bundle import FeatureMismatchError, load_bundle
from engine.cli.live import add_live_arguments, run_live
from engine.data import load_dataset
from engine.data.features import VideoFeatures
from engine.evaluate import evaluate
from engine.live import LiveRunner, default_bundle, freeze_startup_heap
from engine.proposals import propose
from engine.runtime import SnippetScore
from engine.sinks import LiveEvent
from engine.train import predict
from stream.config import FeatureConfig
from stream.frame import StatusEvent
from stream.intervals import ExpressionType, Interval
from stream.listen import Listener, Received
from stream.pipeline import extract
from stream.publish import Publisher

REPO = Path(__file__).resolve().parents[2]
ANY_PORT = "tcp://127.0.0.1:*"
# The recording: one synthetic subject on mespot's bundled face, 24 s at 30 fps, 30 expressions
# per 100 s (8 here: 4 MaE, 4 ME), distractors on (blinks, head moves, light, noise, JPEG).
RECIPE = {"videos": 1, "seconds": 24.0, "seed": 1, "density": 30.0, "distractors": True}
# Floor on MaE recall only, measured first: the default bundle finds 3 of this recording's 4 MaEs
# (recall 0.75, MaE F1 0.86; the bundle before it, without input normalisation, found all 4) and none
# of its MEs (the bundle's ME recall is 0.48 on its own training set and 0-0.5 on 24 s recordings like
# this one, with MEs often typed as MaEs and back). Over four such recordings its MaE recall ranged
# 0.2-1.0, so the floor asks for half the MaEs: a broken live path (misaligned scores, lost events)
# finds none, a working one with this model finds most.
MAE_RECALL_FLOOR = 0.5


@dataclass(frozen=True)
class Recording:
    video: Path
    truths: list[Interval]
    fps: float


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """A synthetic 24 s video with its ground truth (rendered once per module)."""
    from stream.synth.dataset import recipe_from, write_dataset
    from stream.synth.identity import load_faces

    out = tmp_path_factory.mktemp("live-recording")
    write_dataset(recipe_from(None, **RECIPE), load_faces(["bundled:single_face"]), out, workers=1)
    record = load_dataset("csv", out / "annotations.csv").videos[0]
    return Recording(out / "videos" / f"{record.video}.mp4", list(record.expressions), record.fps)


class Proc:
    """A subprocess whose stdout and stderr lines are collected by reader threads."""

    def __init__(self, cmd: list[str]) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.cmd = cmd
        self.popen = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        self.out_lines: list[str] = []
        self.err_lines: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, q: queue.Queue[str]) -> None:
        for line in stream:
            q.put(line.rstrip("\n"))

    def wait_for(self, which: str, predicate, timeout_s: float) -> str:
        """The first new line of stdout/stderr for which predicate holds (AssertionError after timeout)."""
        q, seen = (self.out, self.out_lines) if which == "out" else (self.err, self.err_lines)
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = q.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.popen.poll() is not None and q.empty():
                    break
                continue
            seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"{self.cmd[:4]}: no matching {which} line in {timeout_s} s; {self.tail()}")

    def finish(self, timeout_s: float) -> int:
        """Wait for exit (kill after the timeout), then collect every remaining line."""
        try:
            rc = self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.cmd[:4]} did not exit within {timeout_s} s; {self.tail()}") from None
        finally:
            for t in self._threads:
                t.join(5)
            for q, seen in ((self.out, self.out_lines), (self.err, self.err_lines)):
                while not q.empty():
                    seen.append(q.get())
        return rc

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def tail(self) -> str:
        return f"stderr tail: {self.err_lines[-15:]}"


def journal_messages(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def as_interval(m: dict) -> Interval:
    return Interval(
        m["onset_frame"], m["offset_frame"], ExpressionType(m["type"]), m["apex_frame"], m["score"]
    )


# ------------------------------------------------------------------------------------------
# End to end: run_live.py, two subscriber processes, the journal, the ground truth
# ------------------------------------------------------------------------------------------


def test_end_to_end_replay_publishes_to_subscribers_and_journal(
    recording: Recording, tmp_path: Path, tcp_endpoint
) -> None:
    pub, snap = tcp_endpoint(), tcp_endpoint()
    journal = tmp_path / "cam0.jsonl"
    listen = [sys.executable, "-m", "engine.cli", "listen", pub, "--snapshot", snap, "--json"]
    early = Proc([*listen, "--topics", "event", "status", "--timeout", "240"])
    source = ["--source", str(recording.video), "--fast", "--journal", str(journal)]
    live = Proc([sys.executable, "run_live.py", *source, "--pub", pub, "--snapshot", snap, "--linger", "60"])
    late: Proc | None = None
    try:
        # The run has published everything (and flushed the journal) once it lingers.
        live.wait_for("err", lambda line: line.startswith("lingering"), timeout_s=180)
        events = [m for m in journal_messages(journal) if m["kind"] == "event"]
        assert events, f"no event spotted; {live.tail()}"
        # A subscriber that joins now has missed every event: it gets them from the snapshot endpoint.
        late = Proc([*listen, "--topics", "event", "--count", str(len(events)), "--timeout", "60"])
        assert late.finish(90) == 0, late.tail()
        live.popen.send_signal(signal.SIGTERM)  # ends the linger
        assert live.finish(30) == 0, live.tail()
        time.sleep(0.5)  # anything still in flight to the early subscriber
        early.popen.send_signal(signal.SIGINT)
        assert early.finish(30) == 0, early.tail()
    finally:
        for p in (live, early, late):
            if p is not None:
                p.kill()

    messages = journal_messages(journal)
    received = [json.loads(line) for line in early.out_lines if line.startswith("{")]
    got_events = [m for m in received if m["kind"] == "event"]
    assert got_events == events  # the subscriber in another process got exactly the journal's events
    assert [m["seq"] for m in events] == list(range(1, len(events) + 1))
    late_events = [json.loads(line) for line in late.out_lines if line.startswith("{")]
    assert [m for m in late_events if m["kind"] == "event"] == events
    # Status events went to the topic as journalled (`mespot listen` recovers missed events, not
    # status messages, so the subscriber may lack the first ones if it connected late); the end of
    # the file came last, after every event.
    statuses = [m for m in received if m["kind"] == "status"]
    journalled = {m["seq"]: m for m in messages if m["kind"] == "status"}
    assert statuses and all(journalled[m["seq"]] == m for m in statuses)
    assert any(m["status"] == "face_found" for m in journalled.values())
    assert statuses[-1] == messages[-1]
    assert messages[-1]["status"] == "source" and messages[-1]["detail"].startswith("end: end of file")
    # printed one line each on stdout
    assert sum(" event " in line for line in live.out_lines) == len(events)
    # latency recorded per event: publish time minus the capture time of the offset frame
    for m in events:
        assert m["capture_ns"] is not None and m["latency_s"] == pytest.approx(
            (m["publish_mono_ns"] - m["capture_ns"]) / 1e9
        )

    preds = [as_interval(m) for m in events]
    report = evaluate({"v": preds}, {"v": recording.truths}, recording.fps)
    print(
        f"\nlive replay of {recording.video.name}: {len(preds)} events, {len(recording.truths)} truths\n"
        f"{report.table()}"
    )
    assert report.mae.recall >= MAE_RECALL_FLOOR, report.table()


# ------------------------------------------------------------------------------------------
# Offline equals live
# ------------------------------------------------------------------------------------------


def test_offline_equals_live(recording: Recording) -> None:
    bundle = load_bundle(default_bundle())
    scores: list[SnippetScore] = []
    with LiveRunner(recording.video, bundle, mode="fast", backend="torch", on_score=scores.append) as runner:
        report = runner.run()
    assert report.policy == "replay" and report.dropped == 0 and report.end_reason == "end of stream"

    # Offline: batch extraction of the same file, one whole-sequence forward, propose on the whole.
    ex = extract(recording.video, bundle.feature_config)
    feats = VideoFeatures(
        "v",
        ex.motion,
        ex.geometry,
        ex.valid,
        bundle.feature_config.snippet_seconds,
        bundle.feature_config.fps,
    )
    network = bundle.network()
    cls, act = predict(network, bundle.method(network), feats)
    assert [s.index for s in scores] == list(range(len(ex.valid)))
    assert np.array_equal([s.valid for s in scores], ex.valid)
    live_cls = np.array([s.class_scores for s in scores], np.float64)
    live_act = np.array([s.actionness for s in scores], np.float64)
    np.testing.assert_allclose(live_cls, cls, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(live_act, act, atol=1e-5, equal_nan=True)

    offline = propose(cls, bundle.proposal_config(), snippet_s=feats.snippet_s, fps=feats.fps, actionness=act)
    live = sorted(report.events, key=lambda e: (e.interval.onset, e.interval.type.value))
    offline = sorted(offline, key=lambda iv: (iv.onset, iv.type.value))
    assert [(e.interval.onset, e.interval.offset, e.interval.type) for e in live] == [
        (iv.onset, iv.offset, iv.type) for iv in offline
    ]
    assert [e.interval.score for e in live] == pytest.approx([iv.score for iv in offline], abs=1e-4)
    assert offline, "the recording should give at least one interval"


def test_offline_equals_live_with_a_lookahead(videos: Path, tmp_path: Path) -> None:
    """A network that sees L = 3 snippets ahead: the runner scores snippet t - L when snippet t
    arrives and the last L at the end of the stream, so scores and events still equal the
    whole-sequence forward and `propose` on it, and its latencies account for the look-ahead."""
    import torch

    from engine.bundle import feature_dims, save_bundle
    from engine.models import NetworkConfig, build_network
    from engine.proposals import ProposalConfig
    from engine.train import TrainConfig

    features = FeatureConfig(flow_scales_s=(0.1,), eye_openness=False)  # small and quick
    dm, dg = feature_dims(features)
    torch.manual_seed(0)
    network = build_network(NetworkConfig(embed_dim=16, motion_dim=dm, geometry_dim=dg, lookahead=3)).eval()
    point = ProposalConfig(oic_source="actionness", type_rule="class", nms="class")
    folder = save_bundle(
        tmp_path / "ahead.mespot",
        network,
        TrainConfig(network=network.config, method="full", epochs=1),
        features,
        operating_point=point,
    )
    bundle = load_bundle(folder)
    assert bundle.lookahead_s == pytest.approx(3 * features.hop_s)
    scores: list[SnippetScore] = []
    video = videos / "single_face.mp4"
    with LiveRunner(video, bundle, mode="fast", backend="torch", on_score=scores.append) as runner:
        assert runner.lookahead_s == bundle.lookahead_s
        assert runner.max_latency_s == pytest.approx(runner.spotter.max_latency_s + bundle.lookahead_s)
        report = runner.run()
    assert report.end_reason == "end of stream" and report.lookahead_s == bundle.lookahead_s

    ex = extract(video, features)
    feats = VideoFeatures("v", ex.motion, ex.geometry, ex.valid, features.snippet_seconds, features.fps)
    cls, act = predict(bundle.network(), bundle.method(), feats)
    assert [s.index for s in scores] == list(range(len(ex.valid)))  # every snippet, the last L too
    assert report.snippets == len(ex.valid) and np.array_equal([s.valid for s in scores], ex.valid)
    np.testing.assert_allclose([s.class_scores for s in scores], cls, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose([s.actionness for s in scores], act, atol=1e-5, equal_nan=True)
    offline = propose(cls, point, snippet_s=feats.snippet_s, fps=feats.fps, actionness=act)
    live = sorted(report.events, key=lambda e: (e.interval.onset, e.interval.type.value))
    offline = sorted(offline, key=lambda iv: (iv.onset, iv.type.value))
    assert [(e.interval.onset, e.interval.offset, e.interval.type) for e in live] == [
        (iv.onset, iv.offset, iv.type) for iv in offline
    ]
    assert offline, "the untrained network's scores should cross a threshold somewhere"


# ------------------------------------------------------------------------------------------
# Faces lost, bad frames, stop
# ------------------------------------------------------------------------------------------


def collect_until(listener: Listener, done, timeout_s: float = 20.0) -> list[dict]:
    messages: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while not done(messages) and (left := deadline - time.monotonic()) > 0:
        item = listener.recv(min(left, 0.5))
        if isinstance(item, Received):
            messages.append(item.message)
    return messages


def ended(messages: list[dict]) -> bool:
    return any(m["kind"] == "status" and m.get("detail", "").startswith("end:") for m in messages)


def test_face_lost_mid_stream_is_reported_and_ends_cleanly(videos: Path, tmp_path: Path) -> None:
    publisher = Publisher("door", ANY_PORT, ANY_PORT, journal=tmp_path / "door.jsonl")
    with (
        Listener(
            publisher.endpoint,
            publisher.snapshot_endpoint,
            topics=["event", "status"],
            catch_up=["event", "status"],
            heartbeats=False,
        ) as listener,
        LiveRunner(videos / "face_noface.mov", mode="fast", publisher=publisher) as runner,
    ):
        report = runner.run()
        messages = collect_until(listener, ended)
    assert report.end_reason == "end of stream" and report.error is None
    status = [m for m in messages if m["kind"] == "status"]
    lost = [m for m in status if m["status"] == "face_lost"]
    assert lost, [m["status"] for m in status]
    assert status[-1]["status"] == "source" and status[-1]["detail"].startswith("end:")
    lost_at = lost[-1]["frame_index"]
    events = [m for m in messages if m["kind"] == "event"]
    assert all(m["onset_frame"] <= lost_at for m in events), (lost_at, events)
    assert report.valid_snippets < report.snippets  # the snippets after the loss carry no features
    assert journal_messages(tmp_path / "door.jsonl")[-1]["detail"].startswith("end:")  # flushed on close


def test_bad_frames_are_reported_and_the_stream_goes_on(videos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    cap = cv2.VideoCapture(str(videos / "single_face.mp4"))
    n = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        cv2.imwrite(str(folder / f"img{n + 1}.jpg"), image)
        n += 1
    cap.release()
    broken = [20, 21, 50]
    for k in broken:
        (folder / f"img{k}.jpg").write_bytes(b"not a jpeg at all")
    statuses = []
    with LiveRunner(folder, mode="fast", on_status=statuses.append) as runner:
        report = runner.run()
    assert report.end_reason == "end of stream" and report.errors == 0
    assert report.bad_frames == len(broken)
    bad = [s for s in statuses if s.detail.startswith("bad_frame")]
    assert len(bad) == len(broken)
    assert report.snippets == n // runner.feature_config.hop_frames  # the stream went on to the end
    assert report.valid_snippets > 0


def test_realtime_mode_paces_a_recording_under_the_live_policy(videos: Path) -> None:
    stamps: list[int] = []
    with LiveRunner(
        videos / "single_face.mp4", mode="realtime", on_snippet=lambda s: stamps.append(s.capture_ns)
    ) as runner:
        report = runner.run()
    assert report.policy == "live" and report.end_reason == "end of stream"
    assert report.frames + report.dropped == 72 and report.snippets >= 1
    assert stamps == sorted(stamps)


def test_stop_event_ends_a_live_run_and_flushes(tmp_path: Path) -> None:
    publisher = Publisher("sim", ANY_PORT, None, journal=tmp_path / "sim.jsonl")
    events: list[LiveEvent] = []
    with LiveRunner("sim://?seed=1&density=60", publisher=publisher, on_event=events.append) as runner:
        assert runner.policy == "live"
        threading.Timer(4.0, runner.stop).start()  # from another thread, as a signal handler would
        report = runner.run()
    assert report.end_reason == "stopped"
    journal = journal_messages(tmp_path / "sim.jsonl")
    assert journal[-1]["detail"] == "end: stopped"
    published = [m for m in journal if m["kind"] == "event"]
    assert [(m["type"], m["onset_frame"], m["offset_frame"]) for m in published] == [
        (e.interval.type.value, e.interval.onset, e.interval.offset) for e in events
    ]


@pytest.mark.rtsp
@pytest.mark.timeout(120)
def test_a_dropped_rtsp_feed_is_reported_and_the_run_goes_on(rtsp_server, tmp_path: Path) -> None:
    statuses: list[StatusEvent] = []
    snippets: list[int] = []
    progressed, reconnected = threading.Event(), threading.Event()

    def on_snippet(snippet) -> None:
        snippets.append(snippet.index)
        if len(snippets) >= 6:
            progressed.set()

    def on_status(status: StatusEvent) -> None:
        statuses.append(status)
        if status.detail.startswith("reconnected"):
            reconnected.set()

    publisher = Publisher("rtsp", ANY_PORT, None, journal=tmp_path / "rtsp.jsonl")
    with LiveRunner(
        rtsp_server.url, publisher=publisher, on_status=on_status, on_snippet=on_snippet
    ) as runner:
        worker = threading.Thread(target=runner.run)
        worker.start()
        try:
            assert progressed.wait(60), "no snippet from the RTSP feed"
            rtsp_server.kill()  # the camera vanishes
            time.sleep(0.5)
            rtsp_server.start()
            assert reconnected.wait(30), [s.detail for s in statuses]
            progressed.clear()
            del snippets[:]
            assert progressed.wait(60), "no snippet after the reconnection"
        finally:
            runner.stop()
            worker.join(30)
        assert not worker.is_alive()
    report = runner.report
    assert report.end_reason == "stopped" and report.error is None
    details = [s.detail for s in statuses]
    assert any(d.startswith("disconnected") for d in details), details
    journal = journal_messages(tmp_path / "rtsp.jsonl")
    assert any(m.get("detail", "").startswith("reconnected") for m in journal)
    assert journal[-1]["detail"] == "end: stopped"


def test_sigterm_stops_run_live_cleanly(tmp_path: Path, tcp_endpoint) -> None:
    journal = tmp_path / "live.jsonl"
    pub, snap = tcp_endpoint(), tcp_endpoint()
    live = Proc([sys.executable, "run_live.py", "--journal", str(journal), "--pub", pub, "--snapshot", snap])
    try:
        # sim:// realtime is running once the face is found (the status line is printed then)
        live.wait_for("err", lambda line: line.startswith("status face_found"), timeout_s=120)
        live.popen.send_signal(signal.SIGTERM)
        rc = live.finish(20)  # liveness bound: it must exit within seconds, not hang
    finally:
        live.kill()
    assert rc == 0, live.tail()
    messages = journal_messages(journal)
    assert messages[0]["status"] == "source" and messages[0]["detail"].startswith("started: sim://")
    assert messages[-1]["status"] == "source" and messages[-1]["detail"] == "end: stopped"
    assert any("stopped" in line for line in live.err_lines)


# ------------------------------------------------------------------------------------------
# Bad input, the feature check, the preview
# ------------------------------------------------------------------------------------------


def live_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_live_arguments(parser)
    return parser.parse_args(list(argv))


def test_bad_input_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ports = ["--pub", ANY_PORT, "--snapshot", "none", "--quiet"]
    missing = tmp_path / "missing.mp4"
    assert run_live(live_args("--source", str(missing), *ports)) == 2
    assert str(missing) in capsys.readouterr().err
    assert run_live(live_args("--bundle", str(tmp_path), *ports)) == 2
    assert "bundle.json" in capsys.readouterr().err
    assert run_live(live_args("--source", "sim://?nope=1", *ports)) == 2
    assert "nope" in capsys.readouterr().err
    with Publisher("busy", ANY_PORT, None) as busy:  # a port already bound
        assert run_live(live_args("--pub", busy.endpoint, "--snapshot", "none", "--quiet")) == 2
    assert busy.endpoint in capsys.readouterr().err


def test_a_pipeline_the_bundle_was_not_trained_on_is_refused(recording: Recording) -> None:
    with pytest.raises(FeatureMismatchError, match=r"hop_s: bundle 0\.1333+ != pipeline 0\.2666+"):
        LiveRunner(recording.video, feature_config=FeatureConfig(hop_s=8 / 30))


def test_live_subcommand_parser() -> None:
    from engine.cli.live import add_parser as add_live_parser
    from engine.cli.live import cmd_live

    parser = argparse.ArgumentParser(prog="mespot")
    add_live_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["live", "--source", "clip.mp4", "--fast", "--stream", "door"])
    assert args.func is cmd_live and args.mode == "fast" and args.stream == "door"
    args = parser.parse_args(["live"])
    assert (args.source, args.mode, args.pub, args.snapshot) == (
        "sim://",
        "realtime",
        "tcp://127.0.0.1:5556",
        "tcp://127.0.0.1:5557",
    )


def test_a_failing_callback_is_reported_and_the_run_goes_on(videos: Path) -> None:
    calls: list[int] = []

    def on_snippet(snippet) -> None:
        calls.append(snippet.index)
        if snippet.index in (2, 3):  # a bug in user code, twice, before the snippet is scored
            raise RuntimeError(f"boom at snippet {snippet.index}")

    statuses: list[StatusEvent] = []
    with LiveRunner(
        videos / "single_face.mp4", mode="fast", on_snippet=on_snippet, on_status=statuses.append
    ) as runner:
        report = runner.run()
    assert report.end_reason == "end of stream" and report.error is None
    assert report.errors == 2
    last = 72 // runner.feature_config.hop_frames - 1
    assert max(calls) == last  # went on to the last snippet
    assert runner.scorer.ring.total == last + 1  # the lost snippets were filled in as invalid
    assert statuses[-1].detail.startswith("end:")


class _Node:
    """An object the collector tracks; a self-reference makes it cyclic garbage once unreachable."""

    me: _Node | None = None


def _cyclic_garbage() -> weakref.ref:
    node = _Node()
    node.me = node
    return weakref.ref(node)


def test_freeze_startup_heap_collects_first_and_later_garbage_is_still_collected() -> None:
    gc.disable()  # no automatic collection between the steps
    try:
        start_up_garbage = _cyclic_garbage()
        kept = _Node()
        frozen_before = gc.get_freeze_count()
        freeze_startup_heap()
        assert start_up_garbage() is None  # collected, not frozen for the life of the process
        assert gc.get_freeze_count() > frozen_before  # the live start-up heap is exempt now
        stream_garbage = _cyclic_garbage()
        gc.collect()
        assert stream_garbage() is None  # what the stream allocates afterwards is collected as ever
        assert kept.me is None
    finally:
        gc.unfreeze()
        gc.enable()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_journal_that_cannot_be_written_stops_the_run_with_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["--source", "sim://?seed=1", "--fast", "--duration", "3", "--journal", "/dev/full"]
    base += ["--pub", ANY_PORT, "--snapshot", "none", "--quiet"]
    assert run_live(live_args(*base)) == 1
    err = capsys.readouterr().err
    assert "journal /dev/full: write failed (No space left on device)" in err and "stopping" in err
    # The user's choice: go on without it.
    assert run_live(live_args(*base, "--continue-without-journal")) == 0
    assert "going on without it" in capsys.readouterr().err
