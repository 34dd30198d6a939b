"""Fixtures for the stream tests (the shared data fixtures live in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


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
