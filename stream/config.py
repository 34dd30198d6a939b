"""The feature configuration: everything that decides what a snippet feature means.

It travels with every extracted file and (later) every model bundle; its hash keys the feature
cache, so two configurations that could give different numbers never share cached features.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

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
FEATURE_LAYOUT_VERSION = 1


@dataclass(frozen=True)
class FeatureConfig:
    """How frames become snippet features.

    Attributes:
        fps: canonical frame rate every source is resampled to.
        crop_size: side of the aligned grey face crop in pixels.
        align_deadband_px: the alignment is held until the landmarks imply a move of the stable
            points beyond this many pixels of a 128 px crop (0: re-align every frame).
        flow: optical-flow estimator name (dis, farneback, tvl1).
        skip_k: flow is computed from the frame skip_k frames back (at the canonical rate).
        snippet_frames: frames per snippet (g).
        roi_set: name of the region-of-interest set on face-mesh landmarks.
        patch_radius: half-side of the square patch around each ROI landmark, in pixels of a
            128 px crop (scaled with crop_size).
        neutral_tau_s: time constant of the running neutral face (landmark geometry reference).
        max_hold_s: the longest hole a source frame may fill by repetition when resampling.
    """

    fps: float = 30.0
    crop_size: int = 128
    align_deadband_px: float = 1.0
    flow: str = "dis"
    skip_k: int = 3
    snippet_frames: int = 8
    roi_set: str = "mesh17"
    patch_radius: float = 5.0
    neutral_tau_s: float = 3.0
    max_hold_s: float = 0.25

    _RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "fps": (1.0, 1000.0),
        "crop_size": (32, 512),
        "align_deadband_px": (0.0, 16.0),
        "skip_k": (1, 30),
        "snippet_frames": (1, 256),
        "patch_radius": (1.0, 32.0),
        "neutral_tau_s": (0.1, 600.0),
        "max_hold_s": (0.01, 10.0),
    }

    def __post_init__(self) -> None:
        for name, (lo, hi) in self._RANGES.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
                raise ConfigError(f"feature config {name}={v!r}: must be a number in [{lo}, {hi}]")
        for name in ("crop_size", "skip_k", "snippet_frames"):
            if not isinstance(getattr(self, name), int):
                raise ConfigError(f"feature config {name}={getattr(self, name)!r}: must be an integer")
        from stream.features import ROI_SETS
        from stream.flow import FLOWS

        if self.flow not in FLOWS:
            raise ConfigError(f"feature config flow={self.flow!r}: choose one of {FLOWS.names()}")
        if self.roi_set not in ROI_SETS:
            raise ConfigError(f"feature config roi_set={self.roi_set!r}: choose one of {ROI_SETS.names()}")

    @property
    def snippet_seconds(self) -> float:
        return self.snippet_frames / self.fps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"layout_version": FEATURE_LAYOUT_VERSION}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Build from a dict (e.g. read from JSON); unknown keys and a foreign layout fail."""
        data = dict(data)
        version = data.pop("layout_version", FEATURE_LAYOUT_VERSION)
        if version != FEATURE_LAYOUT_VERSION:
            raise ConfigError(
                f"feature layout version {version} does not match this mespot ({FEATURE_LAYOUT_VERSION})"
            )
        refuse_unknown_keys(cls, data, "feature config")
        return cls(**data)

    def digest(self) -> str:
        """Short stable hash of the configuration (keys the feature cache)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
