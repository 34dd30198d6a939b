"""Snippet features of a dataset's videos, extracted once through the one pipeline and cached."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.data.records import Dataset, VideoRecord
from stream.config import FeatureConfig
from stream.errors import SourceEmpty, SourceNotFound
from stream.extract_cache import FeatureCache, load_features, require_snippets

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass(frozen=True)
class VideoFeatures:
    """The snippet features of one annotated video.

    Attributes:
        video: the video id (as in the annotations).
        motion: (T, 3 * Dm) float32 snippet motion features.
        geometry: (T, 3 * Dg) float32 snippet geometry / appearance features.
        valid: (T,) bool snippet validity.
        snippet_s: seconds per snippet.
        fps: the video's own frame rate (its annotation frame numbers).
        first_frame: the number of the video's first frame in its annotations.
        config: the feature configuration they were extracted with (names their columns).
    """

    video: str
    motion: np.ndarray
    geometry: np.ndarray
    valid: np.ndarray
    snippet_s: float
    fps: float
    first_frame: int = 0
    config: FeatureConfig = field(default_factory=FeatureConfig, repr=False)

    @property
    def snippet_frames(self) -> float:
        """Frames of the video's own rate per snippet (may be fractional)."""
        return self.snippet_s * self.fps


def media_path(record: VideoRecord, media_dir: Path | None) -> Path:
    """Where a video's frames are: its frames_dir, or `media_dir / video` as a folder or a file."""
    if record.frames_dir is not None and record.frames_dir.exists():
        return record.frames_dir
    if media_dir is not None:
        for candidate in [
            media_dir / record.video,
            *(media_dir / f"{record.video}{s}" for s in VIDEO_SUFFIXES),
        ]:
            if candidate.exists():
                return candidate
    raise SourceNotFound(record.video, f"no frames folder or video file for it under {media_dir}")


def dataset_features(
    dataset: Dataset,
    media_dir: Path | None,
    cache_dir: Path,
    config: FeatureConfig | None = None,
    *,
    extract: Callable[[Path, FeatureConfig, FeatureCache, float | None], Path] | None = None,
    skip_empty: bool = False,
) -> dict[str, VideoFeatures]:
    """Features of every video of a dataset, extracting the ones not yet in the cache.

    A video not cached for `config` but cached for a richer configuration whose features hold
    these (more flow scales, eye openness, a finer grid; `stream.feature_view`) is read out of
    those instead of extracted again (not when a custom `extract` is given).

    Args:
        dataset: the annotated dataset.
        media_dir: folder of the videos (files or frame folders named by video id), for records
            without a frames_dir.
        cache_dir: the feature cache root (a subfolder per feature configuration).
        config: the feature configuration (defaults if None).
        extract: how to extract one missing input into the cache, given the input, the
            configuration, the cache and the frame rate of a frame folder; returns its .npz
            (default: the pipeline in replay mode).
        skip_empty: a video that yields no valid snippet is left out of the result with a
            warning naming it, instead of an error (`Dataset.with_videos` drops it from the set).

    Raises:
        SourceNotFound: a video's file or frame folder is missing.
        SourceEmpty: a video yields no valid snippet (named with its file), unless skip_empty.
    """
    config = config or FeatureConfig()
    cache = FeatureCache(cache_dir, config)
    out: dict[str, VideoFeatures] = {}
    for i, record in enumerate(dataset.videos, 1):
        path = media_path(record, media_dir)
        npz = cache.lookup(path)
        try:
            if npz is None and extract is None and (found := cache.lookup_view(path)) is not None:
                source_npz, view = found
                log.info("%s: features read out of %s (%s)", record.video, source_npz.parent.name, path)
                arrays = view.apply(load_features(source_npz))
            else:
                if npz is None:
                    print(f"[{i}/{len(dataset.videos)}] extracting {path}", file=sys.stderr)
                    # frame folders carry no timestamps: their rate is the dataset's (200 for SAMM-LV)
                    npz = (extract or _extract)(path, config, cache, record.fps if path.is_dir() else None)
                arrays = load_features(npz)
            # A video with nothing to learn from or score is named here, not by a tensor error later.
            require_snippets(path, arrays["valid"], record.video)
        except SourceEmpty as exc:
            if not skip_empty:
                raise
            log.warning("skipped (--skip-empty): %s", exc)
            continue
        out[record.video] = VideoFeatures(
            video=record.video,
            motion=arrays["motion"],
            geometry=arrays["geometry"],
            valid=arrays["valid"].astype(bool),
            snippet_s=config.snippet_seconds,
            fps=record.fps,
            first_frame=record.first_frame,
            config=config,
        )
    return out


def _extract(path: Path, config: FeatureConfig, cache: FeatureCache, source_fps: float | None) -> Path:
    from stream.pipeline import extract

    result = extract(path, config, source_fps=source_fps)
    require_snippets(path, result.valid)  # before storing: an empty file would be reused later
    return cache.store(path, result)
