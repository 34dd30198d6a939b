"""Fixtures for the stream tests: the real videos and faces in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="session")
def videos() -> Path:
    path = SHARED_DATA / "videos"
    if not path.is_dir():
        pytest.skip(f"real test videos not found at {path} (shared/ must sit beside the repository)")
    return path


@pytest.fixture(scope="session")
def face_frames(videos: Path) -> list[np.ndarray]:
    """All 72 BGR frames of single_face.mp4."""
    cap = cv2.VideoCapture(str(videos / "single_face.mp4"))
    frames = []
    ok, img = cap.read()
    while ok:
        frames.append(img)
        ok, img = cap.read()
    cap.release()
    return frames
