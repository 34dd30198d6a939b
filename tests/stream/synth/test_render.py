"""Rendered action units move their own face region, and only while they act.

A short video with scripted events is rendered from a real face and run through the real
pipeline (`stream.pipeline.Pipeline`); each event must raise the motion of the ROI that watches
its action unit (stream/features.py) while it acts, and that ROI must stay near its background
level everywhere else. A blink must raise the eye ROIs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stream.config import FeatureConfig
from stream.features import ROI_SETS, feature_names
from stream.frame import Frame
from stream.intervals import ExpressionType
from stream.pipeline import Pipeline
from stream.ring import Snippet
from stream.synth.actions import ACTION_UNITS, EXPRESSION_AUS, EYE_OUTER, au_fields
from stream.synth.identity import Identity
from stream.synth.render import Renderer
from stream.synth.timeline import AUSpec, Blink, Envelope, Expression, FrameState, HeadMove, Timeline

K = max(FeatureConfig().flow_ks)
G = FeatureConfig().hop_frames
W = FeatureConfig().window_frames

# (AU, the ROI that must see it, onset frame); each acts for 24 frames (0.8 s)
EVENTS = [
    ("AU12", "mouth_corner", 24),
    ("AU1", "brow_inner", 72),
    ("AU17", "chin", 120),
    ("AU4", "brow_inner", 168),
]
BLINK_ONSET = 216
N_FRAMES = 256


def still(index: int) -> FrameState:
    return FrameState(index, (), 0.0, (0.0, 0.0, 0.0, 0.0), 0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def snippets(identity: Identity) -> list[Snippet]:
    expressions = [
        Expression(ExpressionType.MAE, Envelope(on, on + 10, on + 14, on + 24), (AUSpec(au),), 4.0)
        for au, _, on in EVENTS
    ]
    blink = Blink(Envelope(BLINK_ONSET, BLINK_ONSET + 3, BLINK_ONSET + 4, BLINK_ONSET + 9), 1.0)
    timeline = Timeline.scripted(N_FRAMES, expressions=expressions, blinks=[blink], noise_sigma=1.0)
    renderer = Renderer.for_timeline(identity, timeline)
    frames = (Frame(n, n / 30, n, renderer.render(timeline.state(n)), n) for n in range(N_FRAMES))
    with Pipeline(FeatureConfig()) as pipe:
        out = [o for o in pipe.run(frames, threaded=False) if isinstance(o, Snippet)]
    warm_up = -(-(W + K) // G)  # snippets whose window reaches into the longest flow's warm-up
    assert sum(not s.valid for s in out) <= warm_up
    return out


def roi_motion(snippets: list[Snippet]) -> dict[str, np.ndarray]:
    """Per ROI (sides merged by max), the snippet-mean flow magnitude: (n_snippets,) each."""
    names, _ = feature_names(ROI_SETS.build("mesh17"))
    out: dict[str, np.ndarray] = {}
    for i, n in enumerate(names):
        if n.endswith("@100ms.mag"):  # the shortest flow scale
            roi = n.split("@", 1)[0].removesuffix("_r").removesuffix("_l")
            col = np.array([s.motion[i] if s.valid else np.nan for s in snippets])
            out[roi] = col if roi not in out else np.fmax(out[roi], col)
    return out


def moving(onset: int, offset: int) -> set[int]:
    """Snippets whose window sees motion of an event: flow spans k frames back, and snippet j
    summarises frames [(j + 1) * G - W, (j + 1) * G)."""
    return {j for j in range((onset + 1) // G, (offset + K + W) // G) if (j + 1) * G - W <= offset + K}


@pytest.mark.parametrize("au,roi,onset", EVENTS)
def test_an_action_unit_moves_its_region_while_it_acts(
    snippets: list[Snippet], au: str, roi: str, onset: int
) -> None:
    motion = roi_motion(snippets)
    busy = set().union(*(moving(on, on + 24) for _, _, on in EVENTS), moving(BLINK_ONSET, BLINK_ONSET + 9))
    quiet = [j for j in range(1, len(snippets)) if j not in busy and snippets[j].valid]
    assert len(quiet) >= 8
    background = float(np.median(motion[roi][quiet]))
    inside = moving(onset, onset + 24)
    peak = float(np.nanmax(motion[roi][sorted(inside)]))
    assert peak > 4 * background, (au, peak, background)
    # the acting region leads the face while it acts
    peak_j = sorted(inside)[int(np.nanargmax(motion[roi][sorted(inside)]))]
    ranked = sorted(motion, key=lambda r: motion[r][peak_j], reverse=True)
    assert roi in ranked[:2], (au, ranked[:4])
    # and stays near its background level when nothing acts
    assert float(np.max(motion[roi][quiet])) < 0.35 * peak, (au, motion[roi][quiet], peak)
    assert float(np.max(motion[roi][quiet])) < 2.5 * background


def test_a_blink_moves_the_eyes(snippets: list[Snippet]) -> None:
    motion = roi_motion(snippets)
    inside = sorted(moving(BLINK_ONSET, BLINK_ONSET + 9))
    before = [j for j, s in enumerate(snippets) if s.valid][:2]  # still, before the first event
    assert np.nanmax(motion["eye"][inside]) > 4 * np.max(motion["eye"][before])
    assert np.nanmax(motion["eye"][inside]) > np.nanmax(motion["mouth_corner"][inside])


def test_rendering_is_deterministic_and_noise_changes_per_frame(identity: Identity) -> None:
    timeline = Timeline.scripted(4, noise_sigma=2.0)
    a, b = Renderer.for_timeline(identity, timeline), Renderer.for_timeline(identity, timeline)
    f0, f1 = a.render(timeline.state(0)), a.render(timeline.state(1))
    assert np.array_equal(f0, b.render(timeline.state(0)))
    assert not np.array_equal(f0, f1)
    assert f0.shape == (480, 640, 3) and f0.dtype == np.uint8
    # without an event, consecutive frames differ by the noise only
    assert abs(float(f0.astype(int).mean()) - float(f1.astype(int).mean())) < 0.2


def test_a_head_move_shifts_the_face_by_its_translation(identity: Identity) -> None:
    move = HeadMove(Envelope(0, 9, 9, 9), "shift", (10.0, 0.0, 0.0, 0.0))  # 10 px@100IOD to the right
    timeline = Timeline.scripted(12, head_moves=[move])
    r = Renderer.for_timeline(identity, timeline)
    start, end = r.render(timeline.state(0)), r.render(timeline.state(11))
    expected = 10.0 * identity.iod / 100.0
    rows = slice(150, 330)
    errors = {
        dx: float(np.abs(end[rows, 200 + dx : 440 + dx].astype(int) - start[rows, 200:440]).mean())
        for dx in range(0, 20)
    }
    assert abs(min(errors, key=errors.get) - expected) <= 1.0


def test_every_action_unit_field_peaks_at_one_near_its_landmarks(identity: Identity) -> None:
    lm = identity.landmarks
    xs, ys = np.arange(0, 704, 2.0), np.arange(0, 544, 2.0)
    mid_x = float(lm[list(EYE_OUTER)].mean(0)[0])
    for code in EXPRESSION_AUS:
        au = ACTION_UNITS[code]
        disp, shade = au_fields(au, "both", lm, xs, ys)
        mag = np.hypot(disp[..., 0], disp[..., 1])
        assert mag.max() == pytest.approx(1.0, abs=1e-5), code
        iy, ix = np.unravel_index(np.argmax(mag), mag.shape)
        nearest = np.min(np.hypot(lm[:, 0] - xs[ix], lm[:, 1] - ys[iy]))
        assert nearest < 0.15 * identity.iod, code
        assert shade.min() >= 0 and shade.max() < 0.6
        # a one-sided AU acts on its own side: "r" holds landmark 33, the image's left here
        centroid = {}
        for side in ("r", "l"):
            one, _ = au_fields(au, side, lm, xs, ys)
            w = np.hypot(one[..., 0], one[..., 1]).sum(0)
            centroid[side] = float((w * xs).sum() / w.sum())
        assert centroid["r"] < centroid["l"], code
        if all(k.l is not None for k in au.kernels):
            assert centroid["r"] < mid_x < centroid["l"], code


def test_an_action_scale_sizes_the_motion_and_not_the_shading(identity: Identity) -> None:
    larger = dataclasses.replace(identity, action_scale=1.5)
    base, scaled = Renderer(identity), Renderer(larger)
    assert np.allclose(scaled._scale(2.0)[:2], 1.5 * base._scale(2.0)[:2])
    assert scaled._scale(2.0)[2] == base._scale(2.0)[2]  # shading follows the amplitude alone
    rest = FrameState(0, (), 0.0, (0.0, 0.0, 0.0, 0.0), 0.0, 0.0, 0.0)
    smile = dataclasses.replace(rest, aus=(("AU12", "both", 3.0),))

    def change(r: Renderer) -> float:
        return float(np.abs(r.render(smile).astype(int) - r.render(rest).astype(int)).mean())

    assert change(scaled) > 1.2 * change(base)
