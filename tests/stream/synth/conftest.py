"""Fixtures for the synthetic-face tests: one detector, one identity, faces it has never seen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.synth.identity import BaseFace, Identity, IdentitySpec, LandmarkDetector, load_face, make_identity


@pytest.fixture(scope="session")
def detector() -> Iterator[LandmarkDetector]:
    with LandmarkDetector() as d:
        yield d


@pytest.fixture(scope="session")
def bundled_face() -> BaseFace:
    """The first frame of the clip bundled with mespot (always present)."""
    return load_face("bundled:single_face")


@pytest.fixture(scope="session")
def identity(detector: LandmarkDetector, bundled_face: BaseFace) -> Identity:
    """A subject made from the bundled face (not mirrored), 640 x 480."""
    spec = IdentitySpec.draw(np.random.default_rng([1, 7, 0]), bundled_face.name, 0)
    return make_identity("t01", bundled_face, spec, detector, (640, 480))


@pytest.fixture(scope="session")
def astronaut_crop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A face no recipe uses: a crop of scikit-image's astronaut, saved as JPEG."""
    data = pytest.importorskip("skimage.data")
    rgb = data.astronaut()[20:330, 90:390]  # head and shoulders, off-centre
    path = tmp_path_factory.mktemp("faces") / "astronaut_crop.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


@pytest.fixture(scope="session")
def not_a_face(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real photo without a face (scikit-image's coffee cup), or a smooth gradient without it."""
    folder = tmp_path_factory.mktemp("noface")
    try:
        from skimage import data

        img = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
    except ImportError:
        y, x = np.mgrid[0:240, 0:320]
        img = np.dstack([x % 256, y % 256, (x + y) % 256]).astype(np.uint8)
    path = folder / "coffee.png"
    cv2.imwrite(str(path), img)
    return path
