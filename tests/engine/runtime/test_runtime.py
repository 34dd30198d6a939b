"""Runtime backends and the live StreamScorer: equal to the whole-sequence forward, row by row."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.bundle import Bundle, BundleError, load_bundle, sha256_file
from engine.data.features import VideoFeatures
from engine.export import export, random_windows
from engine.runtime import (
    BACKENDS,
    BackendError,
    OnnxRuntimeBackend,
    StreamScorer,
    TorchBackend,
    open_backend,
    sequence_snippets,
    stream_scores,
)
from engine.runtime.contract import read_onnx_metadata
from engine.train import predict
from stream.config import FeatureConfig
from stream.errors import ConfigError
from stream.pipeline import extract
from stream.ring import SnippetRing

# single-scale flow without eye openness: 153 motion + 153 geometry inputs, a small network
FEATURES = FeatureConfig(flow_scales_s=(0.1,), eye_openness=False)
SNIPPET_S = FEATURES.snippet_seconds
ATOL = 1e-5  # float32 rounding of the same arithmetic; the tolerance of record is 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Hundreds of tiny forwards: one intra-op thread is much faster than several on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def bundle(exported: Path) -> Bundle:
    """A small untrained causal bundle with its ONNX scorer (tests/engine/conftest.py)."""
    return load_bundle(exported)


@pytest.fixture(scope="module")
def real_features(videos: Path) -> dict[str, VideoFeatures]:
    """Snippet features of two real clips through the one pipeline (~3 s each)."""
    out = {}
    for name in ("single_face.mp4", "face_noface.mov"):
        result = extract(videos / name, FEATURES)
        out[name] = VideoFeatures(name, result.motion, result.geometry, result.valid, SNIPPET_S, 30.0)
    return out


def whole_sequence(bundle: Bundle, feats: VideoFeatures) -> tuple[np.ndarray, np.ndarray]:
    network = bundle.network()
    return predict(network, bundle.method(network), feats)


def synthetic(length: int, seed: int = 0) -> VideoFeatures:
    """A long sequence with invalid runs at the start, in the middle and single dropouts."""
    motion, geometry, valid = (a[0] for a in random_windows(1, length, 153, 153, seed=seed))
    valid[:3] = False
    valid[40:47] = False
    motion[~valid] = 0.0
    geometry[~valid] = 0.0
    return VideoFeatures("synthetic", motion, geometry, valid, SNIPPET_S, 30.0)


def assert_rows_equal(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_allclose(g, w, rtol=0, atol=ATOL, equal_nan=True)


@pytest.mark.parametrize("backend_name", ["torch", "onnxruntime"])
def test_stream_scorer_equals_the_whole_sequence_forward(bundle: Bundle, backend_name: str) -> None:
    feats = synthetic(2 * bundle.window + 11)  # the start (short windows) and the steady state
    with open_backend(bundle, backend_name) as backend:
        assert backend.name == backend_name
        got = stream_scores(backend, feats.motion, feats.geometry, feats.valid)
    assert_rows_equal(got, whole_sequence(bundle, feats))
    assert np.isnan(got[1][:3]).all() and np.isnan(got[1][40:47]).all()


def test_a_window_of_exactly_the_receptive_field_is_enough(tmp_path: Path, make_bundle) -> None:
    probe = load_bundle(make_bundle(tmp_path / "probe.mespot"))
    rf = probe.receptive_field
    bundle = load_bundle(make_bundle(tmp_path / "tight.mespot", window=rf))
    assert bundle.window == rf
    feats = synthetic(2 * rf + 5, seed=4)
    with TorchBackend(bundle) as backend:
        got = stream_scores(backend, feats.motion, feats.geometry, feats.valid)
    assert_rows_equal(got, whole_sequence(bundle, feats))


def test_real_snippet_windows(bundle: Bundle, real_features: dict[str, VideoFeatures]) -> None:
    with TorchBackend(bundle) as reference, OnnxRuntimeBackend(bundle) as ort:
        for feats in real_features.values():
            assert feats.valid.any() and not feats.valid.all()  # faces and gaps
            t = min(len(feats.valid), bundle.window)
            window = (feats.motion[None, :t], feats.geometry[None, :t], feats.valid[None, :t])
            want, got = reference.score(*window), ort.score(*window)
            assert max(float(np.max(np.abs(a - b))) for a, b in zip(got, want, strict=True)) <= 1e-4
            streamed = stream_scores(ort, feats.motion, feats.geometry, feats.valid)
            assert_rows_equal(streamed, whole_sequence(bundle, feats))


def test_stream_scorer_reads_a_shared_ring(bundle: Bundle) -> None:
    feats = synthetic(bundle.window + 20, seed=2)
    want = whole_sequence(bundle, feats)
    ring = SnippetRing(bundle.window + 8, 153, 153)  # e.g. the pipeline's own ring
    with TorchBackend(bundle) as backend:
        scorer = StreamScorer(backend, ring)
        with pytest.raises(BackendError, match="no snippet"):
            scorer.score_newest()
        for snippet in sequence_snippets(feats.motion, feats.geometry, feats.valid, SNIPPET_S):
            ring.append(snippet)  # someone else appends; the scorer only reads
            row = scorer.score_newest()
            assert (row.index, row.start_s, row.valid) == (snippet.index, snippet.start_s, snippet.valid)
            if snippet.valid:
                np.testing.assert_allclose(row.class_scores, want[0][snippet.index], atol=ATOL)
                assert row.actionness == pytest.approx(want[1][snippet.index], abs=ATOL)
            else:
                assert np.isnan(row.class_scores).all() and np.isnan(row.actionness)
        with pytest.raises(ConfigError, match="needs W"):
            StreamScorer(backend, SnippetRing(bundle.window - 1, 153, 153))


def test_snippets_lost_upstream_are_scored_as_invalid_and_the_rest_as_the_whole_sequence(
    bundle: Bundle,
) -> None:
    """`StreamScorer.fill_gap`: snippets 5-9 never arrive; they score NaN, and every other snippet
    scores as the whole-sequence forward of the same stream with 5-9 invalid."""
    feats = synthetic(bundle.window + 20, seed=3)
    lost = range(5, 10)
    valid = feats.valid.copy()
    valid[list(lost)] = False
    motion, geometry = feats.motion.copy(), feats.geometry.copy()
    motion[list(lost)] = 0.0
    geometry[list(lost)] = 0.0
    want = whole_sequence(bundle, VideoFeatures("v", motion, geometry, valid, SNIPPET_S, 30.0))
    rows = {}
    with TorchBackend(bundle) as backend:
        scorer = StreamScorer(backend)
        for snippet in sequence_snippets(feats.motion, feats.geometry, feats.valid, SNIPPET_S):
            if snippet.index in lost:
                continue
            for row in [*scorer.fill_gap(snippet.index, SNIPPET_S, 8, 0), scorer.push(snippet)]:
                rows[row.index] = row
    assert sorted(rows) == list(range(len(valid)))
    for j, row in rows.items():
        if j in lost:
            assert not row.valid and np.isnan(row.actionness)
        elif valid[j]:
            assert row.actionness == pytest.approx(want[1][j], abs=ATOL)


def test_open_backend_auto(
    tmp_path: Path, bundle: Bundle, caplog: pytest.LogCaptureFixture, make_bundle
) -> None:
    with caplog.at_level(logging.INFO, logger="engine.runtime"), open_backend(bundle.path) as backend:
        assert backend.name == "onnxruntime"  # no TensorRT engine here, an ONNX scorer is
    assert any("tensorrt skipped" in r.getMessage() for r in caplog.records)
    bare = load_bundle(make_bundle(tmp_path / "bare.mespot"))
    with open_backend(bare, "auto", threads=2) as backend:  # options a candidate lacks are dropped
        assert backend.name == "torch"
    with pytest.raises(BackendError, match="no ONNX scorer"):
        open_backend(bare, "onnxruntime")
    with pytest.raises(BackendError, match="tensorrt backend cannot run here"):
        open_backend(bundle, "tensorrt")
    with pytest.raises(ConfigError, match="unknown runtime backend"):
        open_backend(bundle, "openvino")
    assert BACKENDS.names() == ["onnxruntime", "tensorrt", "torch"]


def test_backend_interface(bundle: Bundle) -> None:
    with OnnxRuntimeBackend(bundle, threads=1) as backend:
        m, g, v = random_windows(2, 8, 153, 153)
        out = backend.infer({"motion": m, "geometry": g, "valid": v})
        assert out["class_scores"].shape == (2, 8, 2) and out["actionness"].shape == (2, 8)
        assert backend.last_latency_s is not None and backend.last_latency_s >= 0
        assert ((out["class_scores"] >= 0) & (out["class_scores"] <= 1)).all()
        with pytest.raises(BackendError, match="at most"):
            backend.score(*random_windows(1, bundle.window + 1, 153, 153))
        with pytest.raises(BackendError, match="expected motion"):
            backend.score(m[:, :, :10], g, v)
        with pytest.raises(BackendError, match="lack"):
            backend.infer({"motion": m})
    with pytest.raises(BackendError, match="after close"):
        backend.score(m, g, v)
    with pytest.raises(ConfigError, match="threads"):
        OnnxRuntimeBackend(bundle, threads=0)


def test_a_non_causal_bundle_cannot_be_windowed(tmp_path: Path, make_bundle) -> None:
    offline = load_bundle(make_bundle(tmp_path / "offline.mespot", causal=False))
    with pytest.raises(BackendError, match="non-causal"):
        open_backend(offline, "torch")


# --- look-ahead: the score of snippet t - L when snippet t arrives, the last L at the flush -------

LOOKAHEAD = 3


@pytest.fixture(scope="module", params=["mcwes", "gim"])
def ahead_bundle(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, make_bundle
) -> Bundle:
    """A small untrained causal bundle with a look-ahead of 3 snippets, and its ONNX scorer."""
    folder = tmp_path_factory.mktemp(f"{request.param}-ahead") / "m.mespot"
    make_bundle(folder, request.param, lookahead=LOOKAHEAD)
    export(folder, "onnx")
    return load_bundle(folder)


@pytest.mark.parametrize("backend_name", ["torch", "onnxruntime"])
def test_lookahead_stream_scores_equal_the_whole_sequence_forward(
    ahead_bundle: Bundle, backend_name: str
) -> None:
    assert ahead_bundle.lookahead == LOOKAHEAD
    feats = synthetic(2 * ahead_bundle.window + 11, seed=5)
    feats.valid[-2] = False  # an invalid snippet among the last L, scored at the flush
    feats.motion[-2] = feats.geometry[-2] = 0.0
    with open_backend(ahead_bundle, backend_name) as backend:
        assert backend.name == backend_name and backend.lookahead == LOOKAHEAD
        got = stream_scores(backend, feats.motion, feats.geometry, feats.valid)
    assert_rows_equal(got, whole_sequence(ahead_bundle, feats))
    assert np.isnan(got[1][:3]).all() and np.isnan(got[1][40:47]).all() and np.isnan(got[1][-2])


@pytest.mark.parametrize("backend_name", ["torch", "onnxruntime"])
def test_lookahead_scores_come_l_snippets_late_then_the_flush(
    ahead_bundle: Bundle, backend_name: str
) -> None:
    feats = synthetic(ahead_bundle.window + 9, seed=6)
    want = whole_sequence(ahead_bundle, feats)
    snippets = list(sequence_snippets(feats.motion, feats.geometry, feats.valid, SNIPPET_S))
    snippets = [dataclasses.replace(s, capture_ns=1000 + s.index) for s in snippets]
    with open_backend(ahead_bundle, backend_name) as backend:
        scorer = StreamScorer(backend)
        assert scorer.lookahead == LOOKAHEAD
        rows = []
        for snippet in snippets:
            row = scorer.push(snippet)
            if snippet.index < LOOKAHEAD:
                assert row is None  # its look-ahead is not complete: nothing yet
                continue
            assert row is not None
            scored = snippets[snippet.index - LOOKAHEAD]  # the snippet L before the pushed one
            assert (row.index, row.valid) == (scored.index, scored.valid)
            assert (row.start_s, row.end_s, row.capture_ns) == (
                scored.start_s,
                scored.end_s,
                scored.capture_ns,
            )
            rows.append(row)
        tail = scorer.flush()
        assert [r.index for r in tail] == list(range(len(snippets) - LOOKAHEAD, len(snippets)))
        assert [r.capture_ns for r in tail] == [s.capture_ns for s in snippets[-LOOKAHEAD:]]
        assert scorer.flush() == []  # once
    rows += tail
    got = (np.array([r.class_scores for r in rows], np.float64), np.array([r.actionness for r in rows]))
    assert_rows_equal(got, want)


@pytest.mark.parametrize("length", [1, LOOKAHEAD - 1, LOOKAHEAD, LOOKAHEAD + 1])
def test_lookahead_a_stream_shorter_than_the_lookahead(ahead_bundle: Bundle, length: int) -> None:
    feats = synthetic(40, seed=7)
    m, g, v = feats.motion[-length:], feats.geometry[-length:], np.ones(length, bool)
    feats = VideoFeatures("short", m, g, v, SNIPPET_S, 30.0)
    with OnnxRuntimeBackend(ahead_bundle) as backend:
        got = stream_scores(backend, feats.motion, feats.geometry, feats.valid)
    assert_rows_equal(got, whole_sequence(ahead_bundle, feats))


def test_lookahead_on_a_shared_ring(ahead_bundle: Bundle) -> None:
    feats = synthetic(ahead_bundle.window + 20, seed=8)
    want = whole_sequence(ahead_bundle, feats)
    ring = SnippetRing(ahead_bundle.window + 8, 153, 153)
    with TorchBackend(ahead_bundle) as backend:
        scorer = StreamScorer(backend, ring)
        for snippet in sequence_snippets(feats.motion, feats.geometry, feats.valid, SNIPPET_S):
            ring.append(snippet)  # someone else appends; the scorer only reads
            row = scorer.score_newest()
            if snippet.index < LOOKAHEAD:
                assert row is None
                continue
            assert row is not None and row.index == snippet.index - LOOKAHEAD
            np.testing.assert_allclose(row.actionness, want[1][row.index], atol=ATOL, equal_nan=True)
        assert [r.index for r in scorer.flush()] == list(
            range(len(feats.valid) - LOOKAHEAD, len(feats.valid))
        )


def test_lookahead_window_must_exceed_it(tmp_path: Path, make_bundle) -> None:
    """With L >= the receptive field, W = L + 1 is the shortest exact window; W = L is refused."""
    ahead = 12
    bundle = load_bundle(make_bundle(tmp_path / "g.mespot", "gim", lookahead=ahead))
    assert bundle.receptive_field < ahead + 1 and bundle.window == 16
    with pytest.raises(ConfigError, match="look-ahead of 12"):
        TorchBackend(bundle, window=ahead)
    feats = synthetic(3 * ahead, seed=9)
    with TorchBackend(bundle, window=ahead + 1) as backend:
        got = stream_scores(backend, feats.motion, feats.geometry, feats.valid)
    assert_rows_equal(got, whole_sequence(bundle, feats))


def test_an_onnx_graph_of_another_lookahead_is_refused(
    ahead_bundle: Bundle, tmp_path: Path, make_bundle
) -> None:
    """Same weights, another L: the look-ahead is no weight, so the graph's metadata is checked."""
    assert read_onnx_metadata(ahead_bundle.file("scorer.onnx"))["lookahead"] == str(LOOKAHEAD)
    causal = make_bundle(tmp_path / "causal.mespot", ahead_bundle.network_config.network)
    assert sha256_file(causal / "weights.pt") == ahead_bundle.files["weights.pt"]["sha256"]
    with pytest.raises(BundleError, match="look-ahead of 3 snippets, the bundle's network has 0"):
        OnnxRuntimeBackend(load_bundle(causal), path=ahead_bundle.file("scorer.onnx"))


@pytest.mark.gpu
def test_tensorrt_stream_scores_equal_the_whole_sequence(tmp_path: Path, make_bundle) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'mespot[gpu]')")
    from engine.runtime.tensorrt_backend import cuda_problem

    if (problem := cuda_problem()) is not None:
        pytest.skip(problem)
    folder = make_bundle(tmp_path / "m.mespot")
    export(folder, "tensorrt", precision="fp32")
    bundle = load_bundle(folder)
    feats = synthetic(2 * bundle.window + 3)
    with open_backend(bundle) as backend:
        assert backend.name == "tensorrt"
        got = stream_scores(backend, feats.motion, feats.geometry, feats.valid)
    want = whole_sequence(bundle, feats)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-4, equal_nan=True)
