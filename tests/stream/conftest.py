"""Fixtures for the stream tests (the shared data fixtures live in tests/conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
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


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    """Fails the test if threads it started are still running 3 s after it ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3.0
    while (left := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"threads left running: {left}"
