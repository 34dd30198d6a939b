"""Dataset and video records: what every loader returns and what label views, training and
evaluation read.

Frames keep the video's own numbering (as the annotation file writes them; `Interval` counts
them inclusively). Where a frame lies in time follows from its *position* in the video's frame
sequence: position 0 is the first frame, time = position / fps, which is the media time mespot's
sources give a frame (`stream.sources`). When the frames are on disk the positions come from
the image file numbers, so gaps in the numbering (CAS(ME)^3) are exact; otherwise the numbering
is taken as contiguous from `first_frame`.

Subjects and identities. Every video has a `subject` (the person or synthetic subject filmed) and
an `identity`: the real person behind it. In the real datasets (CAS(ME)^2, SAMM-LV, CAS(ME)^3)
each subject is a real person, so the identity is the subject. Synthetic subjects are morphs of a
few real photos, several per real person: their identity is that person (the generic CSV's
``identity`` column, or ``subjects.json``; see `engine.data.generic`). Evaluation holds out whole
identities (`Dataset.folds`, ``group="identity"``, the main protocol), so no face of the test
person, however morphed, is seen in training; ``group="subject"`` is the classic
leave-one-subject-out (`Dataset.loso_folds`), identical where identity = subject.
"""

from __future__ import annotations

import bisect
import logging
import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from stream.errors import ConfigError
from stream.frame import IMAGE_SUFFIXES, frame_number
from stream.intervals import MAE_MAX_SECONDS, ME_MAX_SECONDS, ExpressionType, Interval
from stream.registry import Registry

log = logging.getLogger(__name__)


def natural_key(text: str) -> tuple[object, ...]:
    """Sort key that orders embedded numbers numerically ('spNO.2' before 'spNO.10')."""
    return tuple(int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", text))


@dataclass(frozen=True, slots=True)
class Blink:
    """An eye blink in frames, inclusive (CAS(ME)^3 annotates them; useful as hard negatives).

    Attributes:
        onset: first frame.
        offset: last frame (>= onset).
        apex: apex frame if annotated, else None.
    """

    onset: int
    offset: int
    apex: int | None = None

    def __post_init__(self) -> None:
        if self.offset < self.onset:
            raise ValueError(f"blink offset {self.offset} is before its onset {self.onset}")
        if self.apex is not None and not self.onset <= self.apex <= self.offset:
            raise ValueError(f"blink apex {self.apex} lies outside [{self.onset}, {self.offset}]")

    @property
    def length(self) -> int:
        """Frames in the blink, both ends counted."""
        return self.offset - self.onset + 1


@dataclass(frozen=True, slots=True)
class Repair:
    """One annotation row that a loader changed (or dropped) to make it usable.

    Loaders log a warning for each and keep them on the `Dataset`, so nothing changes silently.

    Attributes:
        file: the annotation file.
        sheet: the worksheet (None for CSV).
        row: the 1-based row as a spreadsheet shows it.
        column: the column that was changed.
        video: the video the row belongs to.
        problem: what was wrong.
        action: what the loader did about it.
    """

    file: str
    sheet: str | None
    row: int | None
    column: str
    video: str
    problem: str
    action: str

    def __str__(self) -> str:
        where = Path(self.file).name
        if self.sheet is not None:
            where += f" sheet {self.sheet!r}"
        if self.row is not None:
            where += f" row {self.row}"
        return f"{where} ({self.video}), {self.column}: {self.problem}; {self.action}"


@dataclass(frozen=True, slots=True)
class FrameScan:
    """What a folder of frame images says about a video's numbering.

    Attributes:
        n_frames: number of images.
        first_frame: the smallest frame number in the file names, or None when some name has no
            number (then the numbering cannot be read from the files).
        runs: the frame numbers as inclusive runs of consecutive numbers, or None (as first_frame).
    """

    n_frames: int
    first_frame: int | None
    runs: tuple[tuple[int, int], ...] | None


def frame_runs(numbers: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Collapse frame numbers into sorted inclusive runs: [1, 2, 3, 7, 8] -> ((1, 3), (7, 8))."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return tuple((a, b) for a, b in runs)


def scan_frames(folder: Path) -> FrameScan:
    """Count a folder's frame images and read their numbering from the file names.

    The number of a file is the last integer of its stem (``img12.jpg`` -> 12,
    ``006_1_00012.jpg`` -> 12, ``frame12_l.jpg`` -> 12: `stream.frame.frame_number`), the
    number `stream.sources` orders them by.
    """
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    numbers: list[int] = []
    for p in files:
        number = frame_number(p.stem)
        if number is None:
            return FrameScan(len(files), None, None)
        numbers.append(number)
    if not numbers:
        return FrameScan(0, None, None)
    if len(set(numbers)) != len(numbers):
        # Two files with the same number (img1.jpg and img01.jpg): positions are ambiguous.
        log.warning("%s: several images share a frame number; numbering taken as contiguous", folder)
        return FrameScan(len(files), min(numbers), None)
    return FrameScan(len(files), min(numbers), frame_runs(numbers))


@dataclass(frozen=True, slots=True)
class VideoRecord:
    """One long video and its annotations.

    Attributes:
        video: the video id, unique within its dataset (``15_0101``, ``006_1``, ``spNO.1_a``).
        subject: the subject id (``s15``, ``006``, ``spNO.1``); leave-one-subject-out folds split
            on it.
        fps: the video's frame rate; every frame -> seconds conversion uses it.
        expressions: ground-truth intervals sorted by onset, in the video's own frame numbering.
        frames_dir: where the frames are (a folder of images, or a video file for the generic
            CSV), or None when no dataset root was given.
        n_frames: number of frames on disk, or None when unknown.
        blinks: eye blinks (CAS(ME)^3), sorted by onset.
        first_frame: the number of the video's first frame (1 for CAS(ME)^2 and SAMM-LV images,
            0 for the generic CSV); read from the file names when the frames are on disk.
        frame_runs: the frame numbers present on disk as inclusive runs, or None when unknown
            (then the numbering is contiguous from first_frame).
        identity: the real person the subject is (several synthetic subjects may be morphs of
            one person); leave-one-identity-out folds split on it. None or empty: the subject.
    """

    video: str
    subject: str
    fps: float
    expressions: tuple[Interval, ...] = ()
    frames_dir: Path | None = None
    n_frames: int | None = None
    blinks: tuple[Blink, ...] = ()
    first_frame: int = 1
    frame_runs: tuple[tuple[int, int], ...] | None = field(default=None, repr=False)
    identity: str | None = None

    def __post_init__(self) -> None:
        if not self.video:
            raise ValueError("video id is empty")
        if not self.subject:
            raise ValueError(f"video {self.video}: subject is empty")
        if not self.identity:
            object.__setattr__(self, "identity", self.subject)
        if not self.fps > 0:
            raise ValueError(f"video {self.video}: fps={self.fps} must be > 0")
        if self.n_frames is not None and self.n_frames < 0:
            raise ValueError(f"video {self.video}: n_frames={self.n_frames} must be >= 0")
        for iv in self.expressions:
            if not isinstance(iv, Interval):
                raise TypeError(f"video {self.video}: expressions must be Interval, got {type(iv).__name__}")
        # Sorted once here so every consumer can rely on onset order.
        object.__setattr__(self, "expressions", tuple(sorted(self.expressions, key=_interval_key)))
        object.__setattr__(self, "blinks", tuple(sorted(self.blinks, key=lambda b: (b.onset, b.offset))))
        if self.frame_runs is not None:
            runs = tuple((int(a), int(b)) for a, b in self.frame_runs)
            for (a, b), nxt in zip(runs, [*runs[1:], None], strict=True):
                if b < a or (nxt is not None and nxt[0] <= b + 1):
                    raise ValueError(f"video {self.video}: frame_runs must be sorted, disjoint runs: {runs}")
            if runs and runs[0][0] != self.first_frame:
                raise ValueError(
                    f"video {self.video}: first_frame={self.first_frame} but the frames start at {runs[0][0]}"
                )
            object.__setattr__(self, "frame_runs", runs)

    # -- frames and time --------------------------------------------------------------------------

    def frame_position(self, frame: int) -> int:
        """Position of a frame number in the video's frame sequence (0 = the first frame).

        With the frames on disk this is the number of images numbered below `frame`, so a number
        that falls in a gap maps to the next existing image and numbers past the end continue
        one per frame. Without them it is ``frame - first_frame``.
        """
        if self.frame_runs is None or not self.frame_runs:
            return frame - self.first_frame
        runs = self.frame_runs
        first_start, last_end = runs[0][0], runs[-1][1]
        if frame <= first_start:
            return frame - first_start
        total = sum(b - a + 1 for a, b in runs)
        if frame > last_end:
            return total + frame - last_end - 1
        below = 0
        i = bisect.bisect_right([a for a, _ in runs], frame) - 1  # the run starting at or before
        for a, b in runs[:i]:
            below += b - a + 1
        a, b = runs[i]
        return below + min(frame, b + 1) - a

    def frame_time(self, frame: int) -> float:
        """Seconds from the first frame to the start of `frame` (position / fps)."""
        return self.frame_position(frame) / self.fps

    @property
    def last_frame(self) -> int | None:
        """Number of the last frame, when the frames are known."""
        if self.frame_runs:
            return self.frame_runs[-1][1]
        if self.n_frames is not None:
            return self.first_frame + self.n_frames - 1
        return None

    @property
    def duration_s(self) -> float | None:
        """Length of the video in seconds, when its frame count is known."""
        return None if self.n_frames is None else self.n_frames / self.fps

    # -- expressions ------------------------------------------------------------------------------

    def of_type(self, kind: ExpressionType) -> tuple[Interval, ...]:
        """The intervals of one type, by onset."""
        return tuple(iv for iv in self.expressions if iv.type is kind)

    @property
    def me(self) -> tuple[Interval, ...]:
        return self.of_type(ExpressionType.ME)

    @property
    def mae(self) -> tuple[Interval, ...]:
        return self.of_type(ExpressionType.MAE)

    def has(self, kind: ExpressionType) -> bool:
        return any(iv.type is kind for iv in self.expressions)


def _interval_key(iv: Interval) -> tuple[int, int, str]:
    return (iv.onset, iv.offset, iv.type.value)


@dataclass(frozen=True, slots=True)
class DurationStats:
    """Summary of interval durations, in seconds."""

    count: int
    min_s: float
    mean_s: float
    median_s: float
    max_s: float

    @classmethod
    def of(cls, seconds: list[float]) -> DurationStats | None:
        if not seconds:
            return None
        return cls(
            len(seconds), min(seconds), statistics.fmean(seconds), statistics.median(seconds), max(seconds)
        )

    def __str__(self) -> str:
        return (
            f"n={self.count}, min {self.min_s:.3f} s, mean {self.mean_s:.3f} s, "
            f"median {self.median_s:.3f} s, max {self.max_s:.3f} s"
        )


@dataclass(frozen=True, slots=True)
class DatasetStats:
    """Counts and durations of a dataset, with the intervals that break the duration definitions.

    Attributes:
        name: dataset name.
        n_videos, n_subjects, n_me, n_mae, n_blinks: counts.
        me, mae: durations in seconds per type (None when there is none of that type).
        me_over_max: (video, interval) of MEs longer than ME_MAX_SECONDS (0.5 s): kept as
            labelled (CAS(ME)^3 has many), listed so that nobody re-derives types from durations.
        mae_over_max: (video, interval) of MaEs longer than MAE_MAX_SECONDS (4 s; SAMM-LV's
            Macro rows of more than 800 frames at 200 fps): kept, flagged here.
        n_repairs: annotation values a loader repaired or dropped (see `Dataset.repairs`).
        n_repaired_rows: distinct annotation rows among them.
        videos_without_expressions: videos with no interval (pure negatives).
        total_seconds: summed video length, or None when some frame count is unknown.
        n_identities: distinct identities (real people); equals n_subjects when every subject is
            its own identity.
    """

    name: str
    n_videos: int
    n_subjects: int
    n_me: int
    n_mae: int
    n_blinks: int
    me: DurationStats | None
    mae: DurationStats | None
    me_over_max: tuple[tuple[str, Interval], ...]
    mae_over_max: tuple[tuple[str, Interval], ...]
    n_repairs: int
    n_repaired_rows: int
    videos_without_expressions: int
    total_seconds: float | None
    n_identities: int | None = None

    def format(self) -> str:
        """A short human-readable report."""
        people = ""
        if self.n_identities is not None and self.n_identities != self.n_subjects:
            people = f" of {self.n_identities} identit{'y' if self.n_identities == 1 else 'ies'}"
        lines = [
            f"dataset {self.name}: {self.n_videos} videos, {self.n_subjects} subjects{people}, "
            f"{self.n_mae} MaE + {self.n_me} ME" + (f", {self.n_blinks} blinks" if self.n_blinks else ""),
            f"  ME  durations: {self.me or 'none'}",
            f"  MaE durations: {self.mae or 'none'}",
            f"  ME longer than {ME_MAX_SECONDS} s: {len(self.me_over_max)} (kept as labelled)",
            f"  MaE longer than {MAE_MAX_SECONDS} s: {len(self.mae_over_max)} (kept, flagged)",
            f"  videos without expressions: {self.videos_without_expressions}",
            f"  repaired annotation rows: {self.n_repaired_rows} ({self.n_repairs} values)",
        ]
        if self.total_seconds is not None:
            lines.append(f"  total length: {self.total_seconds / 60:.1f} min")
        return "\n".join(lines)


GROUPS = ("identity", "subject")
"""How evaluation folds group videos: by identity (the main protocol) or by subject."""


@dataclass(frozen=True, slots=True)
class Fold:
    """One leave-one-group-out fold: a held-out identity (or subject) and everything else.

    Attributes:
        name: the held-out group (an identity, or a subject for ``group="subject"``).
        group: ``"identity"`` or ``"subject"``.
        train_subjects: the subjects to train (and choose operating points) on, natural order.
        test_subjects: the held-out subjects: every subject of the held-out group.
        train_groups: the groups (identities or subjects) in training, natural order.
    """

    name: str
    group: str
    train_subjects: tuple[str, ...]
    test_subjects: tuple[str, ...]
    train_groups: tuple[str, ...] = ()

    @classmethod
    def of(cls, fold: Fold | tuple[Iterable[str], str]) -> Fold:
        """A Fold, also from the (training subjects, test subject) pairs of `Dataset.loso_folds`."""
        if isinstance(fold, Fold):
            return fold
        train, test = fold
        train = tuple(train)
        return cls(test, "subject", train, (test,), train)


@dataclass(frozen=True, slots=True)
class Dataset:
    """A loaded spotting dataset.

    Attributes:
        name: the registry name of its layout (``casme2``, ``samm-lv``, ``casme3``, ``csv``).
        fps: the dataset's nominal frame rate. Each `VideoRecord.fps` is authoritative for its
            video (a generic CSV may mix rates).
        videos: the videos, sorted by subject then video id (natural order).
        repairs: the annotation rows the loader changed or dropped, each also logged.
        source: the annotation file it came from, if any.
    """

    name: str
    fps: float
    videos: tuple[VideoRecord, ...]
    repairs: tuple[Repair, ...] = ()
    source: Path | None = None

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"dataset {self.name}: fps={self.fps} must be > 0")
        seen: set[str] = set()
        for v in self.videos:
            if v.video in seen:
                raise ValueError(f"dataset {self.name}: video {v.video!r} appears twice")
            seen.add(v.video)
        identity_of: dict[str, str] = {}
        for v in self.videos:
            assert v.identity is not None
            if identity_of.setdefault(v.subject, v.identity) != v.identity:
                raise ValueError(
                    f"dataset {self.name}: subject {v.subject!r} has videos of identities "
                    f"{identity_of[v.subject]!r} and {v.identity!r}; a subject is one person"
                )
        ordered = sorted(self.videos, key=lambda v: (natural_key(v.subject), natural_key(v.video)))
        object.__setattr__(self, "videos", tuple(ordered))
        object.__setattr__(self, "repairs", tuple(self.repairs))

    def __len__(self) -> int:
        return len(self.videos)

    def subjects(self) -> list[str]:
        """Subject ids in natural order."""
        return sorted({v.subject for v in self.videos}, key=natural_key)

    def by_subject(self, subject: str) -> tuple[VideoRecord, ...]:
        """The videos of one subject.

        Raises:
            KeyError: no video of that subject.
        """
        found = tuple(v for v in self.videos if v.subject == subject)
        if not found:
            raise KeyError(
                f"dataset {self.name} has no subject {subject!r}; subjects: {', '.join(self.subjects())}"
            )
        return found

    def video(self, video: str) -> VideoRecord:
        """One video by id.

        Raises:
            KeyError: no such video.
        """
        for v in self.videos:
            if v.video == video:
                return v
        raise KeyError(f"dataset {self.name} has no video {video!r}")

    def subset(self, subjects: Iterable[str]) -> Dataset:
        """The dataset restricted to some subjects (repairs of other subjects' videos dropped)."""
        wanted = set(subjects)
        unknown = wanted - set(self.subjects())
        if unknown:
            raise KeyError(
                f"dataset {self.name} has no subject(s) {', '.join(sorted(unknown, key=natural_key))}"
            )
        videos = tuple(v for v in self.videos if v.subject in wanted)
        names = {v.video for v in videos}
        repairs = tuple(r for r in self.repairs if r.video in names)
        return Dataset(self.name, self.fps, videos, repairs, self.source)

    def with_videos(self, videos: Iterable[str]) -> Dataset:
        """The dataset restricted to some videos (a subject left with none disappears)."""
        names = set(videos)
        kept = tuple(v for v in self.videos if v.video in names)
        repairs = tuple(r for r in self.repairs if r.video in names)
        return Dataset(self.name, self.fps, kept, repairs, self.source)

    def loso_folds(self) -> list[tuple[tuple[str, ...], str]]:
        """Leave-one-subject-out folds: (training subjects, test subject), one per subject.

        Every subject is the test subject exactly once; the training subjects are all the others,
        in natural order. Nothing of the test subject is in its training set. This is
        ``folds("subject")`` as pairs; the main protocol is ``folds("identity")``.
        """
        subjects = self.subjects()
        return [(tuple(s for s in subjects if s != test), test) for test in subjects]

    def identities(self) -> list[str]:
        """Identity ids (the real people) in natural order."""
        return sorted({v.identity for v in self.videos if v.identity}, key=natural_key)

    def has_identities(self) -> bool:
        """Whether some identity holds several subjects (else identity folds are subject folds)."""
        return len(self.identities()) != len(self.subjects())

    def subjects_of(self, identity: str) -> tuple[str, ...]:
        """The subjects of one identity, natural order.

        Raises:
            KeyError: no video of that identity.
        """
        found = sorted({v.subject for v in self.videos if v.identity == identity}, key=natural_key)
        if not found:
            raise KeyError(
                f"dataset {self.name} has no identity {identity!r}; "
                f"identities: {', '.join(self.identities())}"
            )
        return tuple(found)

    def group_of(self, group: str) -> dict[str, str]:
        """Subject -> its group (its identity, or itself for ``group="subject"``).

        Raises:
            ConfigError: an unknown group.
        """
        _check_group(group)
        return {v.subject: str(v.identity if group == "identity" else v.subject) for v in self.videos}

    def groups(self, group: str = "identity") -> list[str]:
        """The identities (``group="identity"``) or subjects (``"subject"``), natural order."""
        _check_group(group)
        return self.identities() if group == "identity" else self.subjects()

    def folds(self, group: str = "identity") -> list[Fold]:
        """Leave-one-group-out folds, one per identity (the main protocol) or per subject.

        ``group="identity"``: each fold holds out every video of one identity, i.e. every subject
        that is a variant of that person; training is all the other identities. Where every
        subject is its own identity this equals ``group="subject"`` (`loso_folds`).

        Raises:
            ConfigError: an unknown group, or fewer than two groups (no training data left).
        """
        of = self.group_of(group)
        names = self.groups(group)
        if len(names) < 2:
            raise ConfigError(
                f"dataset {self.name}: leave-one-{group}-out needs at least 2 {_plural(group)}, it has "
                f"{len(names)} ({', '.join(names)})"
                + (
                    f" over {len(self.subjects())} subjects; group 'subject' (--group subject) holds "
                    "out single subjects (the test faces are then seen in training)"
                    if group == "identity" and len(self.subjects()) > 1
                    else ""
                )
            )
        subjects = self.subjects()
        return [
            Fold(
                name=test,
                group=group,
                train_subjects=tuple(s for s in subjects if of[s] != test),
                test_subjects=tuple(s for s in subjects if of[s] == test),
                train_groups=tuple(g for g in names if g != test),
            )
            for test in names
        ]

    def counts(self) -> dict[str, int]:
        """Number of videos, subjects, MEs and MaEs."""
        return {
            "videos": len(self.videos),
            "subjects": len(self.subjects()),
            "me": sum(len(v.me) for v in self.videos),
            "mae": sum(len(v.mae) for v in self.videos),
        }

    def statistics(self) -> DatasetStats:
        """Counts, durations in seconds (each video at its own fps) and flagged intervals."""
        me_s: list[float] = []
        mae_s: list[float] = []
        me_long: list[tuple[str, Interval]] = []
        mae_long: list[tuple[str, Interval]] = []
        for v in self.videos:
            for iv in v.expressions:
                s = iv.seconds(v.fps)
                if iv.type is ExpressionType.ME:
                    me_s.append(s)
                    if s > ME_MAX_SECONDS:
                        me_long.append((v.video, iv))
                else:
                    mae_s.append(s)
                    if s > MAE_MAX_SECONDS:
                        mae_long.append((v.video, iv))
        durations = [v.duration_s for v in self.videos]
        total = (
            None if any(d is None for d in durations) else float(sum(d for d in durations if d is not None))
        )
        return DatasetStats(
            name=self.name,
            n_videos=len(self.videos),
            n_subjects=len(self.subjects()),
            n_me=len(me_s),
            n_mae=len(mae_s),
            n_blinks=sum(len(v.blinks) for v in self.videos),
            me=DurationStats.of(me_s),
            mae=DurationStats.of(mae_s),
            me_over_max=tuple(me_long),
            mae_over_max=tuple(mae_long),
            n_repairs=len(self.repairs),
            n_repaired_rows=len({(r.file, r.sheet, r.row) for r in self.repairs}),
            videos_without_expressions=sum(1 for v in self.videos if not v.expressions),
            total_seconds=total,
            n_identities=len(self.identities()),
        )

    def summary(self) -> str:
        """`statistics()` as text."""
        return self.statistics().format()


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise ConfigError(f"fold group {group!r}: choose one of {', '.join(GROUPS)}")


def _plural(group: str) -> str:
    return "identities" if group == "identity" else "subjects"


# Dataset layouts by name; each entry is a loader `load(annotation_path, *, root=None, **options)`.
DatasetLoader = Callable[..., Dataset]
DATASETS: Registry[Dataset] = Registry("dataset")
