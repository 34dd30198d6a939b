"""Features of one configuration read out of features extracted with a richer one.

Extraction is the expensive step (face tracking and flow, minutes per dataset); many feature
configurations differ only in what they keep of the same per-frame values. A *view* turns the
snippet features of a source configuration into those of a target configuration without
extracting again, when the target keeps a subset of the source:

- a subset of the flow scales (``flow_scales_s``): their motion columns;
- no eye openness where the source has it: the geometry columns without it;
- a coarser grid with the same window (``hop_s`` a whole multiple m of the source's, ``window_s``
  equal): every m-th snippet, those whose window ends where the target's does.

Every other field must be equal. The values are the same numbers direct extraction gives (each
flow scale is its own incremental estimator; a snippet's summary depends only on its window).
One difference is documented and tested: the source marks a frame valid only once every one of
its flow scales has history, so after the start, a lost face or a time gap a view may mark
invalid a few snippets (at most the longest dropped scale) that direct extraction would keep.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from stream.config import FeatureConfig
from stream.errors import ConfigError
from stream.features import ROI_SETS, feature_names

# Fields a view may change; everything else must match exactly.
_VIEWABLE = {"flow_scales_s", "eye_openness", "hop_s"}


@dataclass(frozen=True)
class FeatureView:
    """Column and snippet selection from a source configuration's features to a target's.

    Attributes:
        source: the configuration the features were extracted with.
        target: the configuration they are read as.
        motion_columns: (3 * Dm_target,) indices into the source's snippet motion vector.
        geometry_columns: (3 * Dg_target,) indices into the source's snippet geometry vector.
        stride: every `stride`-th source snippet is a target snippet.
    """

    source: FeatureConfig
    target: FeatureConfig
    motion_columns: np.ndarray
    geometry_columns: np.ndarray
    stride: int

    def apply(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The target's motion, geometry, valid and start_s from the source's arrays."""
        rows = slice(self.stride - 1, None, self.stride)  # source snippet i ends with target j: i = m(j+1)-1
        valid = arrays["valid"][rows]
        return {
            "motion": arrays["motion"][rows][:, self.motion_columns],
            "geometry": arrays["geometry"][rows][:, self.geometry_columns],
            "valid": valid,
            "start_s": np.arange(len(valid)) * self.target.snippet_seconds,
        }


def _columns(source_names: list[str], target_names: list[str]) -> np.ndarray:
    """Indices of the target's snippet columns (mean, max and min blocks) in the source's."""
    where = {n: i for i, n in enumerate(source_names)}
    per_frame = np.array([where[n] for n in target_names], dtype=np.int64)
    d = len(source_names)
    return np.concatenate([per_frame + b * d for b in range(3)])  # the three summary blocks


def feature_view(source: FeatureConfig, target: FeatureConfig) -> FeatureView:
    """The view reading `target` features out of `source` features.

    Raises:
        ConfigError: the target is not a view of the source (naming the field that differs).
    """
    for f in fields(FeatureConfig):
        if f.name not in _VIEWABLE and getattr(source, f.name) != getattr(target, f.name):
            raise ConfigError(
                f"feature config {f.name}: {getattr(target, f.name)!r} cannot be read out of features made "
                f"with {getattr(source, f.name)!r}; extract them"
            )
    missing = sorted(set(target.flow_scales_s) - set(source.flow_scales_s))
    if missing:
        raise ConfigError(f"feature config flow_scales_s: {missing} s were not extracted")
    if target.eye_openness and not source.eye_openness:
        raise ConfigError("feature config eye_openness: the source features have no eye openness")
    stride, rest = divmod(target.hop_frames, source.hop_frames)
    if rest:
        raise ConfigError(
            f"feature config hop_s: a grid of {target.hop_frames} frames is not every n-th snippet of a "
            f"{source.hop_frames}-frame grid"
        )
    roi = ROI_SETS.build(source.roi_set)
    source_motion, source_geometry = feature_names(roi, source)
    target_motion, target_geometry = feature_names(roi, target)
    return FeatureView(
        source,
        target,
        _columns(source_motion, target_motion),
        _columns(source_geometry, target_geometry),
        stride,
    )


def try_feature_view(source: FeatureConfig, target: FeatureConfig) -> FeatureView | None:
    """`feature_view`, or None when the target cannot be read out of the source."""
    try:
        return feature_view(source, target)
    except ConfigError:
        return None
