"""The feature configuration: everything that decides what a snippet feature means.

It travels with every extracted file and (later) every model bundle; its hash keys the feature
cache, so two configurations that could give different numbers never share cached features.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from stream.checks import check_number
from stream.errors import ConfigError


def refuse_unknown_keys(cls: type, data: Mapping[str, Any], what: str) -> None:
    """Raise ConfigError naming the unknown keys of `data` and the fields `cls` knows.

    Every configuration's ``from_dict`` calls it, so a misspelt key in a JSON file fails loudly.

    Args:
        cls: a dataclass type.
        data: the dict to be turned into `cls`.
        what: the configuration's name in the message (e.g. "feature config").
    """
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} keys {unknown}; known keys: {sorted(known)}")


# Bump when the meaning of a feature changes without a configuration field changing.
# 2: snippets on a hop grid (hop_s, window_s) instead of back-to-back snippet_frames;
#    multi-scale flow (flow_scales_s), eye openness, pooling and rigid_model options.
FEATURE_LAYOUT_VERSION = 2

# How far a duration in seconds may fall from a whole number of canonical frames (in frames).
_WHOLE_FRAME_TOLERANCE = 0.02


def whole_frames(config_name: str, field_name: str, seconds: float, fps: float, *, minimum: int = 1) -> int:
    """A duration in seconds as a whole number of frames at `fps`, or a ConfigError naming the field.

    Durations are set in seconds so that one configuration serves 25, 30 and 200 fps material;
    one that falls between two frames at the canonical rate is refused rather than rounded, since
    rounding would silently change what a feature or a grid cell means.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ConfigError(f"{config_name} {field_name}={seconds!r}: must be a positive number of seconds")
    frames = seconds * fps
    n = round(frames)
    if abs(frames - n) > _WHOLE_FRAME_TOLERANCE or n < minimum:
        raise ConfigError(
            f"{config_name} {field_name}={seconds!r} s is {frames:.3f} frames at fps={fps:g}: it must be a "
            f"whole number of frames (>= {minimum}) at the canonical rate, e.g. {max(n, minimum)}/{fps:g} "
            f"= {max(n, minimum) / fps:.6g} s"
        )
    return n


@dataclass(frozen=True)
class FeatureConfig:
    """How frames become snippet features.

    Attributes:
        fps: canonical frame rate every source is resampled to.
        crop_size: side of the aligned grey face crop in pixels.
        align_deadband_px: the alignment is held until the landmarks imply a move of the stable
            points beyond this many pixels of a 128 px crop (0: re-align every frame).
        flow: optical-flow estimator name (dis-lean, dis, farneback, tvl1). "dis-lean" (DIS
            with medium's finest scale, sparser patches and fewer iterations) is the default
            since the tenth session: medium's end-point error at 0.65 of its time, the same
            leave-one-identity-out accuracy over two seeds, and the pipeline at 0.84-0.92 of its
            face tracker's rate against 0.66-0.73 (docs/results.md, docs/benchmarks.md); "dis"
            is DIS medium.
        flow_scales_s: the flow time scales in seconds, shortest first: per scale s, one flow
            field per frame from the crop s seconds back (k = s * fps frames, a whole number at
            the canonical rate), and its motion features. Texture change and the eye-openness
            change use the shortest scale.
        pooling: how a ROI's landmark patches become one flow or texture value: "mean" (of the
            patch means), or "robust" (the per-channel median over the union of the patch pixels,
            which outlying pixels covering less than half of the region cannot drag).
        rigid_model: the head motion removed from flow and geometry, fitted robustly at the
            reference landmarks: "similarity", "affine" or "projective".
        eye_openness: add per-eye lid openness (relative to the running neutral) and its change
            over the shortest flow scale to the geometry modality.
        hop_s: the snippet grid: one snippet every hop_s seconds; snippet j is the grid cell of
            canonical frames [j * hop, (j + 1) * hop) (hop = hop_s * fps, a whole number of frames).
            Scores, labels and proposals live on this grid.
        window_s: each snippet summarises the window_s seconds of frames that end with its cell
            (frames [(j + 1) * hop - window, (j + 1) * hop)), so it is complete, causally, when its
            cell's last frame arrives; window_s >= hop_s (equal: back-to-back snippets).
        roi_set: name of the region-of-interest set on face-mesh landmarks.
        patch_radius: half-side of the square patch around each ROI landmark, in pixels of a
            128 px crop (scaled with crop_size).
        neutral_tau_s: time constant of the running neutral face (landmark geometry reference).
        max_hold_s: the longest hole a source frame may fill by repetition when resampling.
        flow_compose: chain each flow scale that is a whole multiple of the shortest from the
            shortest scale's fields (`stream.flow.compose_flows`) instead of estimating it: one
            flow estimate a frame instead of one per scale (1.26x faster end to end). Off by
            default: chaining lets more of a small head turn through on the 0.2 s scale
            (`tests/stream/test_features.py`; docs/results.md). Recorded in `to_dict` (and so in
            the digest) only when on, so configurations from before it keep their digests.
        mesh_every: run the face mesh on one canonical frame in this many while a face is
            tracked, the frames between keeping its landmarks (`stream.face.FaceTracker`): 2 halves
            the face tracker's time (extraction 1.15x faster end to end), the landmarks then lag
            by up to a frame, and it costs accuracy on SynthSpot-v2 (GIM over two seeds: overall
            F1 -0.01 and -0.04, ME F1 -0.04 and -0.05; docs/results.md, twelfth session). 1
            (every frame) is the default. Recorded in `to_dict` only when not 1, as flow_compose.
    """

    fps: float = 30.0
    crop_size: int = 128
    align_deadband_px: float = 1.0
    flow: str = "dis-lean"
    flow_scales_s: tuple[float, ...] = (0.1, 0.2)
    pooling: str = "mean"
    rigid_model: str = "similarity"
    eye_openness: bool = True
    hop_s: float = 4 / 30
    window_s: float = 8 / 30
    roi_set: str = "mesh17"
    patch_radius: float = 5.0
    neutral_tau_s: float = 3.0
    max_hold_s: float = 0.25
    flow_compose: bool = False
    mesh_every: int = 1

    _RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "fps": (1.0, 1000.0),
        "crop_size": (32, 512),
        "align_deadband_px": (0.0, 16.0),
        "patch_radius": (1.0, 32.0),
        "neutral_tau_s": (0.1, 600.0),
        "max_hold_s": (0.01, 10.0),
        "mesh_every": (1, 4),
    }

    def __post_init__(self) -> None:
        for name, (lo, hi) in self._RANGES.items():
            check_number("feature config", name, getattr(self, name), lo, hi)
        for name in ("crop_size", "mesh_every"):
            if not isinstance(getattr(self, name), int):
                raise ConfigError(f"feature config {name}={getattr(self, name)!r}: must be an integer")
        hop = whole_frames("feature config", "hop_s", self.hop_s, self.fps)
        window = whole_frames("feature config", "window_s", self.window_s, self.fps)
        if window < hop:
            raise ConfigError(
                f"feature config window_s={self.window_s!r}: must be >= hop_s={self.hop_s!r} "
                "(a snippet summarises at least its own cell)"
            )
        # canonical form: the exact frame counts, so 0.1333 and 4/30 are one configuration
        object.__setattr__(self, "hop_s", hop / self.fps)
        object.__setattr__(self, "window_s", window / self.fps)
        if window > 256:
            raise ConfigError(
                f"feature config window_s={self.window_s!r}: at most 256 frames ({window} given)"
            )
        self._check_feature_options()
        from stream.flow import FLOWS
        from stream.roi import ROI_SETS

        if self.flow not in FLOWS:
            raise ConfigError(f"feature config flow={self.flow!r}: choose one of {FLOWS.names()}")
        if self.roi_set not in ROI_SETS:
            raise ConfigError(f"feature config roi_set={self.roi_set!r}: choose one of {ROI_SETS.names()}")

    def _check_feature_options(self) -> None:
        """Validate and canonicalise flow_scales_s, pooling, rigid_model, eye_openness."""
        scales = self.flow_scales_s
        if isinstance(scales, int | float) or not isinstance(scales, tuple | list) or not scales:
            raise ConfigError(
                f"feature config flow_scales_s={scales!r}: must be a non-empty list of seconds, "
                "e.g. [0.1, 0.2]"
            )
        ks = [whole_frames("feature config", "flow_scales_s", s, self.fps) for s in scales]
        if any(b <= a for a, b in itertools.pairwise(ks)):
            raise ConfigError(
                f"feature config flow_scales_s={list(scales)!r}: scales must be distinct and increasing "
                f"({ks} frames at fps={self.fps:g})"
            )
        if max(scales) > 1.0:
            raise ConfigError(f"feature config flow_scales_s={list(scales)!r}: each scale must be <= 1 s")
        # canonical form: exact frame counts, and a tuple (JSON gives a list)
        object.__setattr__(self, "flow_scales_s", tuple(k / self.fps for k in ks))
        choices = {"pooling": ("mean", "robust"), "rigid_model": ("similarity", "affine", "projective")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"feature config {name}={getattr(self, name)!r}: choose one of {list(allowed)}"
                )
        for name in ("eye_openness", "flow_compose"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"feature config {name}={getattr(self, name)!r}: must be true or false")

    @property
    def flow_ks(self) -> tuple[int, ...]:
        """The flow scales in canonical frames (k per scale), shortest first."""
        return tuple(round(s * self.fps) for s in self.flow_scales_s)

    @property
    def hop_frames(self) -> int:
        """Frames per grid cell (the snippet hop) at the canonical rate."""
        return round(self.hop_s * self.fps)

    @property
    def window_frames(self) -> int:
        """Frames each snippet summarises at the canonical rate."""
        return round(self.window_s * self.fps)

    @property
    def snippet_seconds(self) -> float:
        """Seconds per snippet on the grid (the hop): snippet j covers [j * hop_s, (j + 1) * hop_s)."""
        return self.hop_frames / self.fps

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists for the tuples, so a dict read back from a file compares equal."""
        d = asdict(self) | {"layout_version": FEATURE_LAYOUT_VERSION}
        d["flow_scales_s"] = list(self.flow_scales_s)
        if not self.flow_compose:  # added later: caches and bundles made before it keep their digests
            del d["flow_compose"]
        if self.mesh_every == 1:  # likewise
            del d["mesh_every"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Build from a dict (e.g. read from JSON); unknown keys and a foreign layout fail."""
        data = dict(data)
        version = data.pop("layout_version", FEATURE_LAYOUT_VERSION)
        if version != FEATURE_LAYOUT_VERSION:
            raise ConfigError(
                f"feature layout version {version} does not match this mespot ({FEATURE_LAYOUT_VERSION}): "
                "features or a bundle made by another mespot version; extract the features again "
                "and retrain the model with this one"
            )
        refuse_unknown_keys(cls, data, "feature config")
        return cls(**data)

    def digest(self) -> str:
        """Short stable hash of the configuration (keys the feature cache)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
