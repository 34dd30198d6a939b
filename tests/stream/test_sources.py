"""Frame sources on real videos, real frame folders and real bad input."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.errors import (
    CameraUnavailable,
    ConfigError,
    SourceCorrupt,
    SourceEmpty,
    SourceError,
    SourceNotFound,
)
from stream.frame import Frame, SourceEvent, SourceEventKind
from stream.sources import (
    SOURCE_SCHEMES,
    FolderSource,
    Source,
    VideoFileSource,
    frame_sort_key,
    open_source,
)


def read_all(source: Source) -> list[Frame | SourceEvent]:
    """Every item up to and including END; checks that read() gives None afterwards."""
    items: list[Frame | SourceEvent] = []
    with source:
        while (item := source.read()) is not None:
            items.append(item)
            assert len(items) < 100_000
        assert source.read() is None
    return items


def frames_of(items: list[Frame | SourceEvent]) -> list[Frame]:
    return [i for i in items if isinstance(i, Frame)]


def decoded_frames(video: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    images = []
    while len(images) < n:
        ok, image = cap.read()
        assert ok
        images.append(image)
    cap.release()
    return images


# -- real videos ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "count", "shape", "fps"),
    [
        ("single_face.mp4", 72, (360, 640, 3), 30.0),
        ("face_noface.mov", 169, (540, 960, 3), 26.4),
        ("noface_face.mov", 169, (540, 960, 3), 26.5),
        # the container lists 98 frames; its edit list trims 3, FFmpeg decodes 95
        ("no_face.mp4", 95, (540, 960, 3), 23.7),
    ],
)
def test_real_video_frames_and_media_time(
    videos: Path, name: str, count: int, shape: tuple, fps: float
) -> None:
    source = open_source(videos / name)
    assert isinstance(source, VideoFileSource)
    assert not source.is_live
    assert source.name == str(videos / name)
    assert source.nominal_fps == pytest.approx(fps, rel=0.01)
    items = read_all(source)

    assert isinstance(items[-1], SourceEvent) and items[-1].kind is SourceEventKind.END
    assert "ended early" not in items[-1].detail
    frames = frames_of(items)
    assert len(frames) == len(items) - 1 == count
    assert [f.index for f in frames] == list(range(count))
    assert [f.source_index for f in frames] == list(range(count))
    assert all(f.image.shape == shape and f.image.dtype == np.uint8 for f in frames)
    times = np.array([f.media_time_s for f in frames])
    assert times[0] == 0.0
    assert np.all(np.diff(times) >= 0)
    # container timestamps span the clip at its nominal rate
    assert times[-1] == pytest.approx((count - 1) / fps, rel=0.03)
    captures = [f.capture_ns for f in frames]
    assert captures == sorted(captures)


def test_negative_first_timestamps_start_at_zero(videos: Path) -> None:
    # OpenCV reports -16.7 ms then 33.3 ms for face_noface.mov (FFmpeg's pts: 0, 33.3 ms) and
    # -28.0 ms then 13.7 ms for noface_face.mov (pts 0, 13.7 ms).
    for name, second in (("face_noface.mov", 1 / 30), ("noface_face.mov", 0.013672)):
        with open_source(videos / name) as source:
            first, nxt = source.read(), source.read()
        assert isinstance(first, Frame) and isinstance(nxt, Frame)
        assert first.media_time_s == 0.0
        assert nxt.media_time_s == pytest.approx(second, abs=1e-3)


def test_single_face_times_follow_the_30fps_grid(videos: Path) -> None:
    frames = frames_of(read_all(open_source(str(videos / "single_face.mp4"))))
    assert [f.media_time_s for f in frames] == pytest.approx([i / 30 for i in range(72)], abs=1e-6)


def test_close_ends_the_stream(videos: Path) -> None:
    source = open_source(videos / "single_face.mp4")
    assert isinstance(source.read(), Frame)
    source.close()
    end = source.read()
    assert isinstance(end, SourceEvent) and end.kind is SourceEventKind.END and end.detail == "closed"
    assert source.read() is None
    source.close()  # idempotent


# -- bad video files -----------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceNotFound, match=re.escape("nope.mp4")):
        open_source(missing)
    with pytest.raises(SourceNotFound, match=re.escape("nope.mp4")):
        VideoFileSource(missing)


def test_text_file_renamed_mp4_is_corrupt(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are not the frames you are looking for\n" * 50)
    with pytest.raises(SourceCorrupt, match=re.escape("notes.mp4")) as info:
        open_source(fake)
    assert info.value.source == fake


@pytest.mark.parametrize("keep", [2048, 100_000])
def test_truncated_real_mp4_is_corrupt(videos: Path, tmp_path: Path, keep: int) -> None:
    # The real files keep their index (moov) at the end, so any truncation loses it.
    cut = tmp_path / f"first_{keep}.mp4"
    cut.write_bytes((videos / "single_face.mp4").read_bytes()[:keep])
    with pytest.raises(SourceCorrupt, match=re.escape(cut.name)):
        open_source(cut)


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(SourceEmpty, match=re.escape("empty.mp4")):
        open_source(empty)


def test_zero_frame_video_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "no_frames.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    assert writer.isOpened()
    writer.release()  # a valid AVI with zero frames
    assert path.stat().st_size > 0
    with pytest.raises(SourceEmpty, match=re.escape("no_frames.avi")):
        open_source(path)


def test_truncated_video_delivers_what_decodes_then_reports(videos: Path, tmp_path: Path) -> None:
    # An MJPG AVI keeps its frame count in the header, so a truncated copy still opens.
    full = tmp_path / "full.avi"
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 360))
    for image in decoded_frames(videos / "single_face.mp4", 72):
        writer.write(image)
    writer.release()
    cut = tmp_path / "cut.avi"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])

    items = read_all(open_source(cut))
    frames = frames_of(items)
    assert 10 < len(frames) < 72
    assert [f.index for f in frames] == list(range(len(frames)))
    end = items[-1]
    assert isinstance(end, SourceEvent) and end.kind is SourceEventKind.END
    assert "ended early" in end.detail and f"{len(frames)} of the 72" in end.detail


# -- frame folders -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_images(videos: Path) -> list[np.ndarray]:
    """The first 12 decoded frames of single_face.mp4."""
    return decoded_frames(videos / "single_face.mp4", 12)


def write_casme2_clip(root: Path, images: list[np.ndarray]) -> Path:
    folder = root / "s15" / "15_0101disgustingteeth"
    folder.mkdir(parents=True)
    for k, image in enumerate(images, start=1):  # img1.jpg ... img12.jpg
        assert cv2.imwrite(str(folder / f"img{k}.jpg"), image)
    return folder


def write_sammlv_clip(root: Path, images: list[np.ndarray]) -> Path:
    folder = root / "006_1"
    folder.mkdir(parents=True)
    for k, image in enumerate(images, start=1):  # 006_1_00001.png ...
        assert cv2.imwrite(str(folder / f"006_1_{k:05d}.png"), image)
    return folder


def test_frame_sort_key_is_numeric() -> None:
    names = ["img10.jpg", "img2.jpg", "img1.jpg", "006_1_00011.jpg", "006_1_00003.jpg"]
    ordered = sorted((Path(n) for n in names), key=frame_sort_key)
    assert [p.name for p in ordered] == [
        "img1.jpg",
        "img2.jpg",
        "006_1_00003.jpg",
        "img10.jpg",
        "006_1_00011.jpg",
    ]


def test_casme2_folder(tmp_path: Path, clip_images: list[np.ndarray]) -> None:
    folder = write_casme2_clip(tmp_path, clip_images)
    (folder / "notes.txt").write_text("not an image")
    source = open_source(folder)
    assert isinstance(source, FolderSource)
    assert [p.name for p in source.files][:3] == ["img1.jpg", "img2.jpg", "img3.jpg"]
    assert source.files[-1].name == "img12.jpg"
    frames = frames_of(read_all(source))
    assert [f.index for f in frames] == list(range(12))
    assert [f.media_time_s for f in frames] == pytest.approx([i / 30 for i in range(12)])
    # numeric order: frame k is image k of the clip (JPEG is lossy, hence the tolerance)
    for frame, original in zip(frames, clip_images, strict=True):
        assert frame.image.shape == original.shape
        assert np.abs(frame.image.astype(int) - original).mean() < 3


def test_sammlv_folder_at_200fps(tmp_path: Path, clip_images: list[np.ndarray]) -> None:
    folder = write_sammlv_clip(tmp_path, clip_images)
    source = open_source(str(folder), fps=200)
    assert source.nominal_fps == 200
    frames = frames_of(read_all(source))
    assert [f.media_time_s for f in frames] == pytest.approx([i / 200 for i in range(12)])
    for frame, original in zip(frames, clip_images, strict=True):
        assert np.array_equal(frame.image, original)  # PNG is lossless


def test_unreadable_image_mid_folder_is_reported_and_skipped(
    tmp_path: Path, clip_images: list[np.ndarray]
) -> None:
    folder = write_casme2_clip(tmp_path, clip_images[:6])
    (folder / "img4.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    items = read_all(open_source(folder))
    kinds = [i.kind if isinstance(i, SourceEvent) else "frame" for i in items]
    assert kinds == ["frame"] * 3 + [SourceEventKind.BAD_FRAME] + ["frame"] * 2 + [SourceEventKind.END]
    bad = items[3]
    assert isinstance(bad, SourceEvent) and "img4.jpg" in bad.detail
    assert [f.index for f in frames_of(items)] == [0, 1, 2, 4, 5]  # the gap keeps times right


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no frames here")
    with pytest.raises(SourceEmpty, match=re.escape(str(tmp_path))):
        open_source(tmp_path)


def test_dataset_root_instead_of_clip_folder_gets_a_hint(
    tmp_path: Path, clip_images: list[np.ndarray]
) -> None:
    write_casme2_clip(tmp_path, clip_images[:2])
    with pytest.raises(SourceEmpty, match="subfolder"):
        open_source(tmp_path / "s15")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match="s99"):
        FolderSource(tmp_path / "s99")


# -- cameras and dispatch ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [7, "7"])
def test_missing_camera(spec: int | str) -> None:
    with pytest.raises(CameraUnavailable, match="7") as info:
        open_source(spec)
    assert info.value.source == 7


def test_sim_scheme_loads_the_synthetic_source_on_first_use() -> None:
    from stream.synth.source import SimSource

    with open_source("sim://?seed=1&seconds=1&realtime=0") as src:
        assert isinstance(src, SimSource) and src.is_live
        assert isinstance(src.read(), Frame)


def test_unknown_scheme() -> None:
    with pytest.raises(SourceError, match="unknown scheme"):
        open_source("ftp://example/video.mp4")


def test_scheme_registry_refuses_duplicates_and_dispatches(tmp_path: Path, videos: Path) -> None:
    with pytest.raises(ValueError, match="already registered"):
        SOURCE_SCHEMES.register("rtsp")(VideoFileSource)

    def from_test_scheme(spec: str, *, fps: float | None = None) -> Source:
        return VideoFileSource(videos / spec.removeprefix("mespot-test://"), fps=fps)

    if "mespot-test" not in SOURCE_SCHEMES:  # the registry is process-wide
        SOURCE_SCHEMES.register("mespot-test")(from_test_scheme)
    source = open_source("mespot-test://single_face.mp4")
    assert isinstance(source.read(), Frame)
    source.close()


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="read_timeout_s"):
        open_source(Path(__file__).parent, read_timeout_s=1.0)
    with pytest.raises(ConfigError, match="fps"):
        open_source(Path(__file__).parent, fps=0)
    with pytest.raises(SourceNotFound):
        open_source("definitely/not/here.mp4")
