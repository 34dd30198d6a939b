"""The seeded script of a synthetic video: expressions to find, and everything a spotter must ignore.

A timeline is a list of events in frames (0-based, inclusive, like the spotting datasets):

- **expressions** (the ground truth): micro-expressions (ME, 0.17-0.5 s, low amplitude, one or two
  AUs of one face part) and macro-expressions (MaE, longer than 0.5 s up to 4 s, one to four AUs);
  a share of the MEs sits right before, right after or inside a MaE;
- **distractors**: blinks (0.1-0.4 s, as short as MEs), head moves (quick shifts, excursions that
  come back, slow posture changes: translation, in-plane rotation, scale), lighting changes (steps
  and flickers of the gain and of a gradient across the frame);
- **SynthSpot-v2's distractors** (off unless configured): out-of-plane head turns (yaw / pitch up
  to about 8 degrees, rendered as a perspective warp of the head) and bursts of speech-like mouth
  movement (jaw and lips at 3-6 syllables per second, 1-4 s, not an expression);
- **continuous nuisances**: slow head drift plus a faint tremor, slow lighting drift, sensor
  noise, and a JPEG quality loss on some videos (the video codec adds its own on top).

Amplitudes and head translations are in px@100IOD (pixels at a 100 px inter-ocular distance,
i.e. units of IOD / 100), rotations in degrees, scale as log-scale; `stream.synth.render` turns a
`FrameState` into an image.

The generator works in segments (60 s by default) so that an endless stream (`sim://`) and a
finite video come from the same code: segment k draws from its own seeded generator and starts
from the head pose and lighting the previous segment ended with, so a timeline is a pure function
of (config, seed) and its length does not change what happens early in it.

Density (defaults imitate CAS(ME)^2): 3.5 expressions per 100 s, one third of them MEs (CAS(ME)^2
has 57 ME : 300 MaE; the ME share is raised for training), about 96 % of frames outside any
expression.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from stream.config import refuse_unknown_keys
from stream.errors import ConfigError
from stream.intervals import ExpressionType, Interval
from stream.synth.actions import ACTION_UNITS, SIDES, profile

# ---------------------------------------------------------------------------------------------
# events


@dataclass(frozen=True, slots=True)
class Envelope:
    """Onset-apex-offset profile in frames (inclusive; intensity 0 at onset and offset).

    Attributes:
        onset: first frame of the event (intensity still 0: motion starts after it).
        apex: intensity 1.
        hold_end: intensity stays 1 until here (== apex without a hold).
        offset: last frame (intensity back to 0).
    """

    onset: int
    apex: int
    hold_end: int
    offset: int

    def __post_init__(self) -> None:
        if not self.onset <= self.apex <= self.hold_end <= self.offset:
            raise ValueError(f"envelope needs onset <= apex <= hold_end <= offset, got {self}")

    @property
    def length(self) -> int:
        return self.offset - self.onset + 1

    def value(self, n: int) -> float:
        """Intensity in [0, 1] at frame n."""
        if n <= self.onset or n >= self.offset:
            return 0.0
        return float(profile(n, self.onset, self.apex, self.hold_end, self.offset))

    def progress(self, n: int) -> float:
        """Raised-cosine 0 -> 1 from onset to offset, held at 1 afterwards (persistent changes)."""
        if n <= self.onset:
            return 0.0
        if n >= self.offset:
            return 1.0
        return 0.5 - 0.5 * math.cos(math.pi * (n - self.onset) / (self.offset - self.onset))

    def shifted(self, frames: int) -> Envelope:
        return Envelope(self.onset + frames, self.apex + frames, self.hold_end + frames, self.offset + frames)


@dataclass(frozen=True, slots=True)
class AUSpec:
    """One AU of an expression.

    Attributes:
        au: code in `stream.synth.actions.ACTION_UNITS` ("AU12").
        side: "both", "r" or "l" (unilateral).
        weight: its peak relative to the expression's amplitude (the strongest AU has 1).
    """

    au: str
    side: str = "both"
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.au not in ACTION_UNITS or ACTION_UNITS[self.au].occlusion:
            raise ValueError(f"unknown expression AU {self.au!r}")
        if self.side not in SIDES:
            raise ValueError(f"AU side {self.side!r}: choose one of {SIDES}")

    @property
    def label(self) -> str:
        """FACS-style label: "AU12", "R14", "L12"."""
        return self.au if self.side == "both" else f"{self.side.upper()}{self.au[2:]}"


@dataclass(frozen=True, slots=True)
class Expression:
    """A facial expression to spot.

    Attributes:
        type: ME or MaE.
        envelope: its frames.
        aus: its action units.
        amplitude: peak displacement of its strongest AU, px@100IOD.
        context: "" (alone), or for an ME placed by a MaE: "inside", "before", "after".
    """

    type: ExpressionType
    envelope: Envelope
    aus: tuple[AUSpec, ...]
    amplitude: float
    context: str = ""

    def interval(self) -> Interval:
        e = self.envelope
        return Interval(e.onset, e.offset, self.type, apex=e.apex)

    @property
    def label(self) -> str:
        return "+".join(a.label for a in self.aus)


@dataclass(frozen=True, slots=True)
class Blink:
    """A blink (AU45): the upper lid closes to `closure` (1 = fully shut) and reopens."""

    envelope: Envelope
    closure: float


@dataclass(frozen=True, slots=True)
class HeadTurn:
    """An out-of-plane head rotation that goes, holds and comes back: `delta` = (yaw, pitch) in
    degrees (yaw > 0 turns the nose towards +x of the face, pitch > 0 tips it down); the renderer
    approximates it by a perspective warp of the head about its centre (SynthSpot-v2)."""

    envelope: Envelope
    delta: tuple[float, float]

    persistent: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Speech:
    """A burst of speech-like mouth movement (not an expression): the jaw and lips open and close
    once per syllable. `syllables` holds (onset frame, length in frames, strength in [0, 1]); a
    syllable's opening is a raised-cosine bump, scaled by `amplitude` (px@100IOD of the jaw)."""

    envelope: Envelope
    amplitude: float
    hz: float
    syllables: tuple[tuple[int, int, float], ...]

    persistent: ClassVar[bool] = False

    def value(self, n: int) -> float:
        """Mouth opening in [0, 1] at frame n."""
        if n <= self.envelope.onset or n >= self.envelope.offset:
            return 0.0
        out = 0.0
        for on, length, strength in self.syllables:
            if on < n < on + length - 1:
                out = max(out, strength * (0.5 - 0.5 * math.cos(2 * math.pi * (n - on) / (length - 1))))
        return out

    def shifted(self, frames: int) -> Speech:
        return Speech(
            self.envelope.shifted(frames),
            self.amplitude,
            self.hz,
            tuple((on + frames, length, st) for on, length, st in self.syllables),
        )


# pose / lighting vectors: (tx, ty) px@100IOD, roll in degrees, log-scale
POSE_NAMES = ("tx", "ty", "roll_deg", "log_scale")
LIGHT_NAMES = ("log_gain", "gradient")


@dataclass(frozen=True, slots=True)
class HeadMove:
    """A rigid head motion: `delta` = (tx, ty, roll_deg, log_scale).

    kind "shift" (quick, stays) and "posture" (slow, stays) move the rest pose; "excursion"
    goes and comes back within its envelope.
    """

    envelope: Envelope
    kind: str
    delta: tuple[float, float, float, float]

    @property
    def persistent(self) -> bool:
        return self.kind != "excursion"


@dataclass(frozen=True, slots=True)
class LightChange:
    """A lighting change: `delta` = (log_gain, gradient); "step" stays, "flicker" comes back."""

    envelope: Envelope
    kind: str
    delta: tuple[float, float]

    @property
    def persistent(self) -> bool:
        return self.kind == "step"


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class TimelineConfig:
    """How timelines are drawn. Durations in seconds, amplitudes in px@100IOD.

    Attributes:
        fps: frame rate (30; 200 for SAMM-like material).
        segment_s: generation segment (events never cross a segment boundary).
        density: expressions per 100 s (CAS(ME)^2: about 3.5).
        me_share: fraction of expressions that are MEs (CAS(ME)^2: 0.16; raised for training).
        compound_share: fraction of MEs placed right before, right after or inside a MaE.
        me_duration: ME length range (total, onset to offset).
        mae_duration: MaE length range (strictly longer than 0.5 s); lengths are log-normal
            around `mae_median_s`, clipped to the range.
        mae_median_s: median MaE length.
        me_amplitude: ME peak displacement range (uniform). Real micro-expressions move the skin
            by roughly 1-3 px at a 100 px inter-ocular distance; a first SynthSpot-v1 drawn at
            0.4-1.5 put every ME under the features' noise floor (the baseline found none).
        mae_amplitude: MaE peak displacement range (log-uniform); a smile moves the mouth
            corners by several pixels at 100 px IOD.
        unilateral_me: probability that an ME is one-sided.
        unilateral_mae: likewise for a MaE.
        lead_s: no expression starts in the first seconds of a video (face tracking and the
            running neutral face settle).
        min_gap_s: least time between two expressions that are not a compound pair.
        blink_rate: per-video blinks per minute, drawn uniformly in this range.
        blink_duration: blink length range.
        head_rate: per-video head moves per minute (range).
        light_rate: per-video lighting changes per minute (range).
        head_drift: per-video amplitude of the slow head drift (translation, px@100IOD).
        tremor: per-video amplitude of the 3-8 Hz head tremor (px@100IOD).
        noise_sigma: per-video sensor noise (grey levels, Gaussian).
        jpeg_share: fraction of videos that go through a JPEG quality loss before encoding.
        jpeg_quality: its quality range.
        distractors: False gives a quiet timeline (expressions only: no blink, head motion,
            lighting change, drift, noise or JPEG), for tests and demonstrations.
        me_median_s: median ME length; 0 draws lengths uniformly over `me_duration`, otherwise
            skewed towards its long end with this median (CAS(ME)^2: about 0.45 s).
        me_apex_frac: where an ME's apex lies, as a fraction of its span (uniform in the range).
        quiet_share: probability that a segment holds a long expression-free stretch (SAMM-LV
            has many); no expression is placed inside it.
        quiet_s: that stretch's length range.
        turn_rate: per-video out-of-plane head turns (yaw / pitch) per minute (range; (0, 0): none).
        turn_deg: a turn's angle range (yaw and pitch together), degrees.
        turn_duration: a turn's length (it goes, holds and comes back).
        speech_rate: per-video bursts of speech-like mouth movement per minute ((0, 0): none).
        speech_burst_s: a burst's length range.
        speech_hz: syllable rate range.
        speech_amplitude: jaw opening of a full syllable, px@100IOD (range).

    The fields from `me_median_s` on are SynthSpot-v2's; at their defaults nothing is drawn for
    them, so timelines drawn without them (SynthSpot-v1) stay exactly as they were.
    """

    fps: float = 30.0
    segment_s: float = 60.0
    density: float = 3.5
    me_share: float = 1 / 3
    compound_share: float = 0.25
    me_duration: tuple[float, float] = (0.17, 0.5)
    mae_duration: tuple[float, float] = (0.5, 4.0)
    mae_median_s: float = 1.1
    me_amplitude: tuple[float, float] = (1.0, 3.0)
    mae_amplitude: tuple[float, float] = (3.0, 12.0)
    unilateral_me: float = 0.35
    unilateral_mae: float = 0.15
    lead_s: float = 2.5
    min_gap_s: float = 1.5
    blink_rate: tuple[float, float] = (6.0, 18.0)
    blink_duration: tuple[float, float] = (0.1, 0.4)
    head_rate: tuple[float, float] = (1.5, 4.0)
    light_rate: tuple[float, float] = (0.3, 1.2)
    head_drift: tuple[float, float] = (0.3, 1.5)
    tremor: tuple[float, float] = (0.05, 0.2)
    noise_sigma: tuple[float, float] = (0.5, 2.5)
    jpeg_share: float = 0.5
    jpeg_quality: tuple[int, int] = (70, 95)
    distractors: bool = True
    me_median_s: float = 0.0
    me_apex_frac: tuple[float, float] = (0.35, 0.6)
    quiet_share: float = 0.0
    quiet_s: tuple[float, float] = (20.0, 40.0)
    turn_rate: tuple[float, float] = (0.0, 0.0)
    turn_deg: tuple[float, float] = (2.0, 8.0)
    turn_duration: tuple[float, float] = (0.8, 3.0)
    speech_rate: tuple[float, float] = (0.0, 0.0)
    speech_burst_s: tuple[float, float] = (1.0, 4.0)
    speech_hz: tuple[float, float] = (3.0, 6.0)
    speech_amplitude: tuple[float, float] = (1.5, 4.0)

    _V2_FIELDS: ClassVar[tuple[str, ...]] = (
        "me_median_s",
        "me_apex_frac",
        "quiet_share",
        "quiet_s",
        "turn_rate",
        "turn_deg",
        "turn_duration",
        "speech_rate",
        "speech_burst_s",
        "speech_hz",
        "speech_amplitude",
    )
    _SCALARS: ClassVar[dict[str, tuple[float, float]]] = {
        "fps": (5.0, 1000.0),
        "segment_s": (5.0, 3600.0),
        "density": (0.0, 100.0),
        "me_share": (0.0, 1.0),
        "compound_share": (0.0, 1.0),
        "mae_median_s": (0.5, 4.0),
        "unilateral_me": (0.0, 1.0),
        "unilateral_mae": (0.0, 1.0),
        "lead_s": (0.0, 60.0),
        "min_gap_s": (0.0, 30.0),
        "jpeg_share": (0.0, 1.0),
        "me_median_s": (0.0, 0.5),
        "quiet_share": (0.0, 1.0),
    }
    _RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "me_duration": (0.05, 0.5),
        "mae_duration": (0.5, 30.0),
        "me_amplitude": (0.0, 20.0),
        "mae_amplitude": (0.0, 40.0),
        "blink_rate": (0.0, 60.0),
        "blink_duration": (0.05, 1.0),
        "head_rate": (0.0, 30.0),
        "light_rate": (0.0, 30.0),
        "head_drift": (0.0, 20.0),
        "tremor": (0.0, 5.0),
        "noise_sigma": (0.0, 20.0),
        "jpeg_quality": (5, 100),
        "me_apex_frac": (0.05, 0.95),
        "quiet_s": (0.0, 3600.0),
        "turn_rate": (0.0, 30.0),
        "turn_deg": (0.0, 15.0),
        "turn_duration": (0.2, 10.0),
        "speech_rate": (0.0, 30.0),
        "speech_burst_s": (0.2, 30.0),
        "speech_hz": (0.5, 15.0),
        "speech_amplitude": (0.0, 20.0),
    }

    def __post_init__(self) -> None:
        for name, (lo, hi) in self._SCALARS.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
                raise ConfigError(f"timeline config {name}={v!r}: must be a number in [{lo}, {hi}]")
        for name, (lo, hi) in self._RANGES.items():
            v = getattr(self, name)
            ok = isinstance(v, tuple | list) and len(v) == 2 and all(isinstance(x, int | float) for x in v)
            if not ok or not lo <= v[0] <= v[1] <= hi:
                raise ConfigError(
                    f"timeline config {name}={v!r}: must be (low, high) with {lo} <= low <= high <= {hi}"
                )
        if self.segment_s < self.lead_s + 2 * self.mae_duration[1]:
            raise ConfigError(
                f"timeline config segment_s={self.segment_s}: must leave room for lead_s and two of the "
                f"longest MaE ({self.lead_s + 2 * self.mae_duration[1]:g} s)"
            )
        if self.me_median_s and not self.me_duration[0] < self.me_median_s < self.me_duration[1]:
            raise ConfigError(
                f"timeline config me_median_s={self.me_median_s}: must be 0 (uniform) or lie strictly "
                f"inside me_duration={self.me_duration}"
            )
        if self.me_frames[0] > self.me_frames[1]:
            raise ConfigError(
                f"timeline config me_duration={self.me_duration}: no whole frame count fits at {self.fps} fps"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimelineConfig:
        refuse_unknown_keys(cls, data, "timeline config")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def to_dict(self) -> dict[str, Any]:
        """All fields; SynthSpot-v2's only where they differ from their defaults (so a v1
        configuration reads as it always did)."""
        d = asdict(self)
        defaults = TimelineConfig.__dataclass_fields__
        for name in self._V2_FIELDS:
            default = defaults[name].default
            if d[name] == default or (isinstance(default, tuple) and tuple(d[name]) == default):
                del d[name]
        return d

    # frame counts that satisfy the duration ranges exactly (length / fps inside the range)
    @property
    def me_frames(self) -> tuple[int, int]:
        lo, hi = self.me_duration
        return max(2, math.ceil(lo * self.fps - 1e-9)), math.floor(hi * self.fps + 1e-9)

    @property
    def mae_frames(self) -> tuple[int, int]:
        lo, hi = self.mae_duration
        return math.floor(lo * self.fps + 1e-9) + 1, math.floor(hi * self.fps + 1e-9)  # strictly > 0.5 s

    @property
    def blink_frames(self) -> tuple[int, int]:
        lo, hi = self.blink_duration
        return max(3, math.ceil(lo * self.fps - 1e-9)), max(3, math.floor(hi * self.fps + 1e-9))


# AU combinations. MEs: one or two AUs of one face half (FACS upper / lower); MaEs: prototypes
# of the basic emotions and a few others (one to four AUs).
ME_COMBOS: tuple[tuple[str, ...], ...] = (
    ("AU1",),
    ("AU2",),
    ("AU1", "AU2"),
    ("AU4",),
    ("AU4", "AU7"),
    ("AU7",),
    ("AU6",),
    ("AU12",),
    ("AU6", "AU7"),
    ("AU14",),
    ("AU10",),
    ("AU9", "AU10"),
    ("AU9",),
    ("AU15",),
    ("AU15", "AU17"),
    ("AU17",),
    ("AU20",),
    ("AU23",),
    ("AU25",),
)
MAE_COMBOS: tuple[tuple[str, ...], ...] = (
    ("AU6", "AU12"),  # happiness
    ("AU6", "AU12", "AU25"),
    ("AU12",),
    ("AU12", "AU25"),
    ("AU1", "AU2"),  # surprise
    ("AU1", "AU2", "AU25"),
    ("AU1", "AU2", "AU26"),
    ("AU1", "AU4", "AU15"),  # sadness
    ("AU1", "AU15", "AU17"),
    ("AU4", "AU7"),  # anger
    ("AU4", "AU7", "AU23"),
    ("AU4", "AU17", "AU23"),
    ("AU9", "AU10"),  # disgust
    ("AU9",),
    ("AU10", "AU17"),
    ("AU1", "AU2", "AU4", "AU20"),  # fear
    ("AU1", "AU2", "AU20", "AU25"),
    ("AU14",),  # contempt (often one-sided)
    ("AU25", "AU26"),
    ("AU17", "AU23"),
    ("AU20",),
)


# ---------------------------------------------------------------------------------------------
# timeline


@dataclass(frozen=True, slots=True)
class FrameState:
    """Everything the renderer needs for one frame.

    Attributes:
        index: frame index.
        aus: (AU code, side, displacement px@100IOD) of each moving AU.
        blink: lid closure in [0, 1].
        pose: (tx, ty, roll_deg, log_scale) of the head (tx, ty in px@100IOD).
        log_gain: global lighting gain (log).
        gradient: relative strength of the lighting gradient across the frame.
        gradient_angle: its direction (radians, image coordinates).
        turn: out-of-plane head rotation (yaw, pitch) in degrees.
        speech: jaw opening of speech-like mouth movement, px@100IOD (not an expression).
    """

    index: int
    aus: tuple[tuple[str, str, float], ...]
    blink: float
    pose: tuple[float, float, float, float]
    log_gain: float
    gradient: float
    gradient_angle: float
    turn: tuple[float, float] = (0.0, 0.0)
    speech: float = 0.0


@dataclass(frozen=True)
class VideoParams:
    """Per-video nuisance parameters (drawn once from the seed).

    Attributes:
        noise_sigma: Gaussian sensor noise, grey levels.
        jpeg_quality: JPEG quality applied to every frame, 0 for none.
        gradient_angle: direction of the lighting gradient (radians).
        blink_rate: blinks per minute.
        head_rate: head moves per minute.
        light_rate: lighting changes per minute.
        head_drift: (4, 3, 3) per pose component, three sinusoids of (amplitude, Hz, phase).
        light_drift: (2, 2, 3) per lighting component, two sinusoids of (amplitude, Hz, phase).
    """

    noise_sigma: float
    jpeg_quality: int
    gradient_angle: float
    blink_rate: float
    head_rate: float
    light_rate: float
    head_drift: tuple = field(repr=False)
    light_drift: tuple = field(repr=False)
    turn_rate: float = 0.0
    speech_rate: float = 0.0

    @classmethod
    def quiet(cls) -> VideoParams:
        return cls(0.0, 0, 0.0, 0.0, 0.0, 0.0, (), ())


def _sines(table: np.ndarray, t: float) -> np.ndarray:
    """(C,) sum of sinusoids per component at time t; table (C, S, 3) of (amplitude, Hz, phase)."""
    return (table[..., 0] * np.sin(2 * np.pi * table[..., 1] * t + table[..., 2])).sum(-1)


@dataclass(frozen=True)
class Segment:
    """Events of one generation segment (absolute frames) and the state it starts from."""

    start: int
    frames: int
    expressions: tuple[Expression, ...]
    blinks: tuple[Blink, ...]
    head_moves: tuple[HeadMove, ...]
    light_changes: tuple[LightChange, ...]
    head_rest: tuple[float, float, float, float]
    light_rest: tuple[float, float]
    head_turns: tuple[HeadTurn, ...] = ()
    speech: tuple[Speech, ...] = ()

    @property
    def end(self) -> int:
        return self.start + self.frames

    def head_end(self) -> tuple[float, float, float, float]:
        rest = np.array(self.head_rest) + sum(
            (np.array(m.delta) for m in self.head_moves if m.persistent), np.zeros(4)
        )
        return tuple(float(v) for v in rest)

    def light_end(self) -> tuple[float, float]:
        rest = np.array(self.light_rest) + sum(
            (np.array(c.delta) for c in self.light_changes if c.persistent), np.zeros(2)
        )
        return tuple(float(v) for v in rest)


# bounds of the head rest pose and lighting rest (a persistent change that would leave them
# turns back instead)
_HEAD_BOUNDS = np.array([40.0, 30.0, 8.0, 0.08])
_LIGHT_BOUNDS = np.array([0.3, 0.25])


class Timeline:
    """A seeded script of events; finite (`generate`) or growing on demand (`endless`).

    Attributes:
        config: how it was drawn.
        seed: its seed.
        n_frames: length in frames, or None for an endless timeline.
        params: per-video nuisance parameters.
        segments: generated segments, in order.
    """

    def __init__(self, config: TimelineConfig, seed: int, n_frames: int | None) -> None:
        if n_frames is not None and n_frames < 1:
            raise ConfigError(f"timeline length {n_frames} frames: must be >= 1")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        self.config = config
        self.seed = int(seed)
        self.n_frames = n_frames
        self.segment_frames = max(1, round(config.segment_s * config.fps))
        self.params = (
            _draw_params(np.random.default_rng([self.seed, 0]), config)
            if config.distractors
            else VideoParams.quiet()
        )
        self.segments: list[Segment] = []
        self._starts: list[int] = []

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def generate(cls, config: TimelineConfig, seed: int, seconds: float) -> Timeline:
        """A finite timeline of `seconds` (rounded to whole frames)."""
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
            raise ConfigError(f"seconds must be > 0, got {seconds!r}")
        timeline = cls(config, seed, max(1, round(seconds * config.fps)))
        timeline.ensure(timeline.n_frames)
        return timeline

    @classmethod
    def endless(cls, config: TimelineConfig, seed: int) -> Timeline:
        """A timeline that grows by segments as `ensure` or `state` asks for later frames."""
        return cls(config, seed, None)

    @classmethod
    def scripted(
        cls,
        n_frames: int,
        *,
        fps: float = 30.0,
        expressions: tuple[Expression, ...] | list[Expression] = (),
        blinks: tuple[Blink, ...] | list[Blink] = (),
        head_moves: tuple[HeadMove, ...] | list[HeadMove] = (),
        light_changes: tuple[LightChange, ...] | list[LightChange] = (),
        noise_sigma: float = 0.0,
        head_turns: tuple[HeadTurn, ...] | list[HeadTurn] = (),
        speech: tuple[Speech, ...] | list[Speech] = (),
    ) -> Timeline:
        """A hand-written timeline (no random events, no drift): for tests and demonstrations."""
        config = TimelineConfig(fps=fps, distractors=False, segment_s=max(60.0, n_frames / fps + 1))
        timeline = cls(config, 0, n_frames)
        timeline.params = replace(timeline.params, noise_sigma=float(noise_sigma))
        timeline.segment_frames = n_frames
        by_onset = lambda e: e.envelope.onset  # noqa: E731
        timeline._append(
            Segment(
                0,
                n_frames,
                tuple(sorted(expressions, key=by_onset)),
                tuple(sorted(blinks, key=by_onset)),
                tuple(sorted(head_moves, key=by_onset)),
                tuple(sorted(light_changes, key=by_onset)),
                (0.0, 0.0, 0.0, 0.0),
                (0.0, 0.0),
                tuple(sorted(head_turns, key=by_onset)),
                tuple(sorted(speech, key=by_onset)),
            )
        )
        return timeline

    def ensure(self, n_frames: int) -> None:
        """Generate segments until frames [0, n_frames) are covered (up to the end, if finite)."""
        limit = n_frames if self.n_frames is None else min(n_frames, self.n_frames)
        while self.generated_frames < limit:
            k = len(self.segments)
            start = k * self.segment_frames
            frames = self.segment_frames
            if self.n_frames is not None:
                frames = min(frames, self.n_frames - start)
            prev = self.segments[-1] if self.segments else None
            head_rest = prev.head_end() if prev else (0.0, 0.0, 0.0, 0.0)
            light_rest = prev.light_end() if prev else (0.0, 0.0)
            rng = np.random.default_rng([self.seed, 1, k])
            self._append(
                _draw_segment(rng, self.config, self.params, start, frames, k == 0, head_rest, light_rest)
            )

    def _append(self, segment: Segment) -> None:
        self.segments.append(segment)
        self._starts.append(segment.start)

    # -- queries ------------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        return self.config.fps

    @property
    def generated_frames(self) -> int:
        return self.segments[-1].end if self.segments else 0

    @property
    def expressions(self) -> list[Expression]:
        return [e for s in self.segments for e in s.expressions]

    @property
    def blinks(self) -> list[Blink]:
        return [b for s in self.segments for b in s.blinks]

    @property
    def head_moves(self) -> list[HeadMove]:
        return [m for s in self.segments for m in s.head_moves]

    @property
    def light_changes(self) -> list[LightChange]:
        return [c for s in self.segments for c in s.light_changes]

    @property
    def head_turns(self) -> list[HeadTurn]:
        return [m for s in self.segments for m in s.head_turns]

    @property
    def speech(self) -> list[Speech]:
        return [b for s in self.segments for b in s.speech]

    def intervals(self) -> list[Interval]:
        """Ground truth: the expressions as intervals, in onset order."""
        return sorted((e.interval() for e in self.expressions), key=lambda i: (i.onset, i.offset))

    def segment_at(self, n: int) -> Segment:
        if n < 0 or (self.n_frames is not None and n >= self.n_frames):
            raise IndexError(f"frame {n} outside the timeline (0..{self.n_frames})")
        self.ensure(n + 1)
        return self.segments[bisect_right(self._starts, n) - 1]

    def state(self, n: int) -> FrameState:
        """What the face, head and light do at frame n."""
        seg = self.segment_at(n)
        t = n / self.fps
        aus: dict[tuple[str, str], float] = {}
        for e in seg.expressions:
            if e.envelope.onset < n < e.envelope.offset:
                v = e.envelope.value(n) * e.amplitude
                for a in e.aus:
                    aus[(a.au, a.side)] = aus.get((a.au, a.side), 0.0) + v * a.weight
        blink = max((b.closure * b.envelope.value(n) for b in seg.blinks), default=0.0)
        pose = np.array(seg.head_rest, dtype=np.float64)
        for m in seg.head_moves:
            if n > m.envelope.onset:
                pose += np.array(m.delta) * (m.envelope.progress(n) if m.persistent else m.envelope.value(n))
        light = np.array(seg.light_rest, dtype=np.float64)
        for c in seg.light_changes:
            if n > c.envelope.onset:
                light += np.array(c.delta) * (c.envelope.progress(n) if c.persistent else c.envelope.value(n))
        turn = [0.0, 0.0]
        for m in seg.head_turns:
            v = m.envelope.value(n)
            turn[0] += m.delta[0] * v
            turn[1] += m.delta[1] * v
        speech = max((b.amplitude * b.value(n) for b in seg.speech), default=0.0)
        p = self.params
        if p.head_drift:
            pose += _sines(np.asarray(p.head_drift), t)
        if p.light_drift:
            light += _sines(np.asarray(p.light_drift), t)
        return FrameState(
            n,
            tuple((au, side, v) for (au, side), v in aus.items() if v > 0),
            float(blink),
            (float(pose[0]), float(pose[1]), float(pose[2]), float(pose[3])),
            float(light[0]),
            float(light[1]),
            p.gradient_angle,
            (turn[0], turn[1]),
            float(speech),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (config, per-video parameters and every event)."""

        def event(e: Any) -> dict[str, Any]:
            d = asdict(e)
            d.update(d.pop("envelope"))
            if isinstance(e, Expression):
                d["type"] = e.type.value
                d["aus"] = [a.label for a in e.aus]
                d["au_weights"] = [round(a.weight, 4) for a in e.aus]
            return d

        p = self.params
        c = self.config
        extra: dict[str, Any] = {}
        extra_params: dict[str, Any] = {}
        if c.turn_rate[1] > 0 or self.head_turns:
            extra["head_turns"] = [event(m) for m in self.head_turns]
            extra_params["turn_rate_per_min"] = p.turn_rate
        if c.speech_rate[1] > 0 or self.speech:
            extra["speech"] = [event(b) for b in self.speech]
            extra_params["speech_rate_per_min"] = p.speech_rate
        return {
            "seed": self.seed,
            "fps": self.fps,
            "n_frames": self.n_frames,
            "config": self.config.to_dict(),
            "params": {
                "noise_sigma": p.noise_sigma,
                "jpeg_quality": p.jpeg_quality,
                "gradient_angle": p.gradient_angle,
                "blink_rate_per_min": p.blink_rate,
                "head_rate_per_min": p.head_rate,
                "light_rate_per_min": p.light_rate,
            }
            | extra_params,
            "expressions": [event(e) for e in self.expressions],
            "blinks": [event(b) for b in self.blinks],
            "head_moves": [event(m) for m in self.head_moves],
            "light_changes": [event(x) for x in self.light_changes],
        } | extra


# ---------------------------------------------------------------------------------------------
# drawing


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    if lo <= 0:
        return _uniform(rng, lo_hi)
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _draw_params(rng: np.random.Generator, c: TimelineConfig) -> VideoParams:
    drift = _uniform(rng, c.head_drift)
    tremor = _uniform(rng, c.tremor)

    def sines(amplitude: float, hz: tuple[float, float], n: int) -> list[tuple[float, float, float]]:
        # n sinusoids whose amplitudes add up to `amplitude`
        weights = rng.dirichlet(np.ones(n))
        return [
            (float(amplitude * w), _log_uniform(rng, hz), float(rng.uniform(0, 2 * np.pi))) for w in weights
        ]

    # head: slow drift (two sines) + a 3-8 Hz tremor per component; rotation and scale drift
    # follow the translation drift's strength (degrees, log-scale per px@100IOD of drift)
    head = []
    for amp, trem in (
        (drift, tremor),
        (0.7 * drift, tremor),
        (0.25 * drift, 0.02 * tremor),
        (0.003 * drift, 0.0),
    ):
        tremor_sine = (trem, _uniform(rng, (3.0, 8.0)), float(rng.uniform(0, 2 * np.pi)))
        head.append([*sines(amp, (0.03, 0.6), 2), tremor_sine])
    light = [
        sines(_uniform(rng, (0.01, 0.03)), (0.01, 0.1), 2),  # log gain
        sines(_uniform(rng, (0.02, 0.05)), (0.01, 0.08), 2),  # gradient
    ]
    jpeg = int(rng.integers(c.jpeg_quality[0], c.jpeg_quality[1] + 1)) if rng.random() < c.jpeg_share else 0
    params = VideoParams(
        noise_sigma=_uniform(rng, c.noise_sigma),
        jpeg_quality=jpeg,
        gradient_angle=float(rng.uniform(0, 2 * np.pi)),
        blink_rate=_uniform(rng, c.blink_rate),
        head_rate=_uniform(rng, c.head_rate),
        light_rate=_uniform(rng, c.light_rate),
        head_drift=tuple(tuple(s) for s in head),
        light_drift=tuple(tuple(s) for s in light),
    )
    # SynthSpot-v2's distractors draw after everything else (timelines without them are unchanged)
    if c.turn_rate[1] > 0:
        params = replace(params, turn_rate=_uniform(rng, c.turn_rate))
    if c.speech_rate[1] > 0:
        params = replace(params, speech_rate=_uniform(rng, c.speech_rate))
    return params


def _envelope(start: int, length: int, apex_frac: float, hold_frac: float) -> Envelope:
    """Envelope of `length` frames from `start`; apex and hold as fractions of the span."""
    span = length - 1
    apex = start + max(1, min(span - 1, round(apex_frac * span)))
    hold_end = min(start + span - 1, apex + round(hold_frac * span))
    return Envelope(start, apex, max(apex, hold_end), start + span)


def _aus(
    rng: np.random.Generator, combos: tuple[tuple[str, ...], ...], unilateral: float
) -> tuple[AUSpec, ...]:
    combo = combos[int(rng.integers(len(combos)))]
    side = "both" if rng.random() >= unilateral else ("r" if rng.random() < 0.5 else "l")
    weights = [1.0] + [float(rng.uniform(0.5, 1.0)) for _ in combo[1:]]
    return tuple(AUSpec(au, side, w) for au, w in zip(combo, weights, strict=True))


def _me_frames(rng: np.random.Generator, c: TimelineConfig) -> int:
    lo, hi = c.me_frames
    if c.me_median_s:
        # hi - (hi - lo) u^b puts the uniform median 0.5 on the wanted median; with the median near
        # the long end most MEs are long, and the short ones keep a flat tail down to `lo`
        d_lo, d_hi = c.me_duration
        b = math.log((d_hi - c.me_median_s) / (d_hi - d_lo)) / math.log(0.5)
        seconds = d_hi - (d_hi - d_lo) * float(rng.uniform()) ** b
    else:
        seconds = _uniform(rng, c.me_duration)
    return int(np.clip(round(seconds * c.fps), lo, hi))


def _mae_frames(rng: np.random.Generator, c: TimelineConfig) -> int:
    lo, hi = c.mae_frames
    seconds = c.mae_median_s * float(np.exp(0.45 * rng.standard_normal()))
    return int(np.clip(round(seconds * c.fps), lo, hi))


def _regions(aus: tuple[AUSpec, ...]) -> set[str]:
    return {ACTION_UNITS[a.au].region for a in aus}


def _overlaps(a: Envelope, others: list[Envelope], gap: int) -> bool:
    return any(a.onset <= o.offset + gap and o.onset <= a.offset + gap for o in others)


def _draw_segment(
    rng: np.random.Generator,
    c: TimelineConfig,
    p: VideoParams,
    start: int,
    frames: int,
    first: bool,
    head_rest: tuple[float, float, float, float],
    light_rest: tuple[float, float],
) -> Segment:
    """Events of one segment (frames [start, start + frames))."""
    fps = c.fps
    seconds = frames / fps
    lo = round(c.lead_s * fps) if first else round(0.3 * fps)
    hi = frames - round(0.3 * fps)  # events end before this (segment-relative)
    gap = round(c.min_gap_s * fps)

    # -- a long expression-free stretch (SynthSpot-v2) -----------------------------------------
    blocked: list[Envelope] = []
    if c.quiet_share > 0 and rng.random() < c.quiet_share:
        q_len = min(round(_uniform(rng, c.quiet_s) * fps), max(0, hi - lo - 1))
        if q_len > 0:
            q_on = int(rng.integers(lo, hi - q_len + 1))
            blocked.append(Envelope(q_on, q_on, q_on, q_on + q_len - 1))

    # -- expressions: MaE first, then MEs (some of them by a MaE) ----------------------------
    n_expr = int(rng.poisson(c.density * seconds / 100.0))
    n_me = int(rng.binomial(n_expr, c.me_share))
    maes: list[Expression] = []
    for _ in range(n_expr - n_me):
        length = _mae_frames(rng, c)
        aus = _aus(rng, MAE_COMBOS, c.unilateral_mae)
        amp = _log_uniform(rng, c.mae_amplitude)
        apex_frac, hold_frac = _uniform(rng, (0.15, 0.4)), _uniform(rng, (0.0, 0.35))
        for _try in range(50):
            if hi - length <= lo:
                break
            env = _envelope(int(rng.integers(lo, hi - length)), length, apex_frac, hold_frac)
            if not _overlaps(env, [m.envelope for m in maes], gap) and not _overlaps(env, blocked, 0):
                maes.append(Expression(ExpressionType.MAE, env, aus, amp))
                break
    mes: list[Expression] = []
    for _ in range(n_me):
        length = _me_frames(rng, c)
        amp = _uniform(rng, c.me_amplitude)
        apex_frac, hold_frac = _uniform(rng, c.me_apex_frac), _uniform(rng, (0.0, 0.1))
        aus = _aus(rng, ME_COMBOS, c.unilateral_me)
        taken = [e.envelope for e in maes + mes]
        placed = None
        if maes and rng.random() < c.compound_share:
            host = maes[int(rng.integers(len(maes)))]
            h = host.envelope
            context = ("inside", "before", "after")[int(rng.integers(3))]
            if context == "inside":
                # in a different face part, while the MaE is at or past its apex
                others = [
                    a for a in ME_COMBOS if not ({ACTION_UNITS[x].region for x in a} & _regions(host.aus))
                ]
                if others and h.offset - length - 1 > h.apex:
                    aus = _aus(rng, tuple(others), c.unilateral_me)
                    on = int(rng.integers(h.apex, h.offset - length))
                    placed = (_envelope(on, length, apex_frac, hold_frac), context)
            else:
                pause = round(_uniform(rng, (0.1, 0.6)) * fps)
                on = h.onset - pause - length if context == "before" else h.offset + pause
                if lo <= on and on + length <= hi:
                    env = _envelope(on, length, apex_frac, hold_frac)
                    clear = not _overlaps(env, [e for e in taken if e != h], gap)
                    if clear and not _overlaps(env, blocked, 0):
                        placed = (env, context)
        if placed is None:
            for _try in range(50):
                if hi - length <= lo:
                    break
                env = _envelope(int(rng.integers(lo, hi - length)), length, apex_frac, hold_frac)
                if not _overlaps(env, taken, gap) and not _overlaps(env, blocked, 0):
                    placed = (env, "")
                    break
        if placed is not None:
            mes.append(Expression(ExpressionType.ME, placed[0], aus, amp, placed[1]))
    expressions = sorted(maes + mes, key=lambda e: e.envelope.onset)
    me_envs = [e.envelope for e in mes]

    blinks: list[Blink] = []
    head_moves: list[HeadMove] = []
    light_changes: list[LightChange] = []
    if c.distractors:
        # -- blinks: a Poisson process with a refractory gap; some come in pairs --------------
        quiet_me = round(0.1 * fps)
        bl_lo, bl_hi = c.blink_frames
        t = float(rng.exponential(60.0 / p.blink_rate)) if p.blink_rate > 0 else math.inf
        while t < seconds:
            on = round(t * fps)
            for _k in range(2 if rng.random() < 0.1 else 1):
                length = int(np.clip(round(_uniform(rng, c.blink_duration) * fps), bl_lo, bl_hi))
                closure = 1.0 if rng.random() < 0.8 else _uniform(rng, (0.5, 0.9))
                env = _envelope(on, length, _uniform(rng, (0.25, 0.4)), _uniform(rng, (0.0, 0.15)))
                clear = not _overlaps(env, me_envs, quiet_me) and not _overlaps(
                    env, [b.envelope for b in blinks], 1
                )
                if env.offset < frames and clear:
                    blinks.append(Blink(env, closure))
                on = env.offset + 1 + round(_uniform(rng, (0.05, 0.2)) * fps)  # a double blink
            t += 0.5 + float(rng.exponential(max(60.0 / p.blink_rate - 0.5, 0.1)))

        # -- head moves: times first, then deltas in time order (the rest pose stays bounded) -
        quiet_me = round(0.2 * fps)
        kinds = {  # duration s, translation px@100IOD, roll deg, log-scale
            "shift": ((0.15, 0.6), (2.0, 10.0), 1.5, 0.015),
            "excursion": ((0.4, 1.5), (3.0, 15.0), 3.0, 0.03),
            "posture": ((1.5, 5.0), (8.0, 35.0), 5.0, 0.06),
        }
        planned: list[tuple[str, Envelope]] = []
        for _ in range(int(rng.poisson(p.head_rate * seconds / 60.0))):
            kind = ("shift", "excursion", "posture")[int(rng.choice(3, p=[0.45, 0.3, 0.25]))]
            length = max(3, round(_uniform(rng, kinds[kind][0]) * fps))
            if frames - length - 1 <= 0:
                continue
            on = int(rng.integers(0, frames - length - 1))
            if kind == "excursion":
                env = _envelope(on, length, 0.5, 0.0)
            else:
                env = Envelope(on, on + length - 1, on + length - 1, on + length - 1)
            if not _overlaps(env, me_envs, quiet_me) and not _overlaps(env, [e for _, e in planned], 0):
                planned.append((kind, env))
        rest = np.array(head_rest, dtype=np.float64)
        for kind, env in sorted(planned, key=lambda ke: ke[1].onset):
            _, trans, roll, scale = kinds[kind]
            angle, r = rng.uniform(0, 2 * np.pi), _uniform(rng, trans)
            delta = np.array(
                [r * np.cos(angle), r * np.sin(angle), rng.uniform(-roll, roll), rng.uniform(-scale, scale)]
            )
            delta = np.where(np.abs(rest + delta) > _HEAD_BOUNDS, -delta, delta)  # turn back at the bounds
            if kind != "excursion":
                rest = rest + delta
            head_moves.append(
                HeadMove(env, kind, (float(delta[0]), float(delta[1]), float(delta[2]), float(delta[3])))
            )

        # -- lighting: steps (stay) and flickers (come back) -----------------------------------
        planned = []
        for _ in range(int(rng.poisson(p.light_rate * seconds / 60.0))):
            kind = "step" if rng.random() < 0.6 else "flicker"
            length = max(3, round(_uniform(rng, (0.2, 2.5) if kind == "step" else (0.1, 0.35)) * fps))
            if frames - length - 1 <= 0:
                continue
            on = int(rng.integers(0, frames - length - 1))
            if kind == "step":
                env = Envelope(on, on + length - 1, on + length - 1, on + length - 1)
            else:
                env = _envelope(on, length, 0.4, 0.1)
            if not _overlaps(env, me_envs, quiet_me) and not _overlaps(env, [e for _, e in planned], 0):
                planned.append((kind, env))
        light = np.array(light_rest, dtype=np.float64)
        for kind, env in sorted(planned, key=lambda ke: ke[1].onset):
            sign = 1.0 if rng.random() < 0.5 else -1.0
            delta = np.array([sign * _uniform(rng, (0.05, 0.2)), rng.uniform(-0.1, 0.1)])
            delta = np.where(np.abs(light + delta) > _LIGHT_BOUNDS, -delta, delta)
            if kind == "step":
                light = light + delta
            light_changes.append(LightChange(env, kind, (float(delta[0]), float(delta[1]))))

        head_turns = _draw_turns(rng, c, p, frames, me_envs) if p.turn_rate > 0 else []
        speech = _draw_speech(rng, c, p, frames, me_envs) if p.speech_rate > 0 else []
    else:
        head_turns, speech = [], []

    by_onset = lambda e: e.envelope.onset  # noqa: E731
    return Segment(
        start,
        frames,
        tuple(replace(e, envelope=e.envelope.shifted(start)) for e in expressions),
        tuple(replace(b, envelope=b.envelope.shifted(start)) for b in sorted(blinks, key=by_onset)),
        tuple(replace(m, envelope=m.envelope.shifted(start)) for m in sorted(head_moves, key=by_onset)),
        tuple(replace(x, envelope=x.envelope.shifted(start)) for x in sorted(light_changes, key=by_onset)),
        head_rest,
        light_rest,
        tuple(replace(m, envelope=m.envelope.shifted(start)) for m in sorted(head_turns, key=by_onset)),
        tuple(b.shifted(start) for b in sorted(speech, key=by_onset)),
    )


def _draw_turns(
    rng: np.random.Generator, c: TimelineConfig, p: VideoParams, frames: int, me_envs: list[Envelope]
) -> list[HeadTurn]:
    """Out-of-plane head turns: look aside (yaw), up or down (pitch), hold, come back."""
    quiet_me = round(0.2 * c.fps)
    turns: list[HeadTurn] = []
    for _ in range(int(rng.poisson(p.turn_rate * frames / c.fps / 60.0))):
        length = max(5, round(_uniform(rng, c.turn_duration) * c.fps))
        apex_frac, hold_frac = _uniform(rng, (0.2, 0.4)), _uniform(rng, (0.1, 0.4))
        angle, r = float(rng.uniform(0, 2 * np.pi)), _uniform(rng, c.turn_deg)
        if frames - length - 1 <= 0:
            continue
        env = _envelope(int(rng.integers(0, frames - length - 1)), length, apex_frac, hold_frac)
        if not _overlaps(env, me_envs, quiet_me) and not _overlaps(env, [t.envelope for t in turns], 0):
            turns.append(HeadTurn(env, (r * math.cos(angle), r * math.sin(angle))))
    return turns


def _draw_speech(
    rng: np.random.Generator, c: TimelineConfig, p: VideoParams, frames: int, me_envs: list[Envelope]
) -> list[Speech]:
    """Bursts of speech-like mouth movement: syllables at 3-6 Hz with jittered lengths and
    strengths, a few silent beats; never near an ME."""
    fps = c.fps
    quiet_me = round(0.2 * fps)
    bursts: list[Speech] = []
    for _ in range(int(rng.poisson(p.speech_rate * frames / fps / 60.0))):
        length = max(6, round(_uniform(rng, c.speech_burst_s) * fps))
        hz, amp = _uniform(rng, c.speech_hz), _uniform(rng, c.speech_amplitude)
        if frames - length - 1 <= 0:
            continue
        on = int(rng.integers(0, frames - length - 1))
        off = on + length - 1
        syllables: list[tuple[int, int, float]] = []
        t = float(on)
        while True:
            n = max(3, round(fps / hz * _uniform(rng, (0.7, 1.3))))
            if round(t) + n - 1 > off:
                break
            strength = 0.0 if rng.random() < 0.12 else _uniform(rng, (0.35, 1.0))
            if strength > 0:
                syllables.append((round(t), n, strength))
            t += n
        if not syllables:
            continue
        first, last = syllables[0], syllables[-1]
        peak = max(syllables, key=lambda s: s[2])
        apex = peak[0] + (peak[1] - 1) // 2
        env = Envelope(first[0], apex, apex, last[0] + last[1] - 1)
        if not _overlaps(env, me_envs, quiet_me) and not _overlaps(env, [b.envelope for b in bursts], 0):
            bursts.append(Speech(env, amp, hz, tuple(syllables)))
    return bursts
