"""Spotting datasets: annotation loaders chosen by name, the records they return, label views.

    from engine.data import load_dataset
    ds = load_dataset("samm-lv", "SAMM_LongVideos_V3_Release.xlsx", root=Path("SAMM_longvideos"))
    for train_subjects, test_subject in ds.loso_folds(): ...

Layouts, quirks and how each is handled: docs/datasets.md.
"""

from __future__ import annotations

from pathlib import Path

# Importing the loader modules registers them in DATASETS.
from engine.data import casme2, casme3, generic, sammlv
from engine.data.errors import AnnotationError, AnnotationNotFound, FramesNotFound
from engine.data.labels import PointFrame, PointLabel, full_labels, point_frames, point_labels, video_level
from engine.data.records import DATASETS, Blink, Dataset, DatasetStats, DurationStats, Repair, VideoRecord


def load_dataset(
    name: str, annotation_path: str | Path, *, root: Path | None = None, **options: object
) -> Dataset:
    """Load a dataset by layout name (``casme2``, ``samm-lv``, ``casme3``, ``csv``).

    Args:
        name: the layout, as registered in DATASETS.
        annotation_path: the annotation file.
        root: the folder with the frames, or None.
        **options: layout-specific options (see each loader's ``load``).

    Raises:
        ConfigError: unknown layout name.
        AnnotationError, FramesNotFound: see the loader.
    """
    return DATASETS.get(name)(annotation_path, root=root, **options)


__all__ = [
    "DATASETS",
    "AnnotationError",
    "AnnotationNotFound",
    "Blink",
    "Dataset",
    "DatasetStats",
    "DurationStats",
    "FramesNotFound",
    "PointFrame",
    "PointLabel",
    "Repair",
    "VideoRecord",
    "casme2",
    "casme3",
    "full_labels",
    "generic",
    "load_dataset",
    "point_frames",
    "point_labels",
    "sammlv",
    "video_level",
]
