"""Training videos cut into clips, each labelled by the expressions it holds (`TrainConfig.clip_s`).

A whole-video method (MC-WES, PWES, GIM) learns from one label set per training video. Where a
long video holds both an ME and a MaE, as every expression video of SynthSpot-v2 does, MC-WES's
video-level labels say only "something happens here": one bit, and nothing tells an ME from a
MaE. A dataset of short clips, each labelled on its own (the layout of several ME collections),
carries more: some clips hold only MEs, some only MaEs, many nothing. `cut_into_clips` turns a
long annotated video into such clips, for training only; evaluation stays on whole videos.

The cuts fall every ``clip_s`` seconds, each moved forward past any expression it would split
(as whoever cuts a recording into clips would), and a tail shorter than half a clip joins the
clip before it. A clip holds the expressions whose apex (the middle frame when the apex is not
annotated) lies in it, clamped to its span, in the clip's own frame numbering from 0.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from engine.data.features import VideoFeatures
from engine.data.labels import snippet_of_frame
from engine.data.records import Blink, Interval, VideoRecord
from stream.errors import ConfigError

__all__ = ["clip_bounds", "cut_into_clips"]


def clip_bounds(record: VideoRecord, feats: VideoFeatures, clip_s: float) -> list[tuple[int, int]]:
    """Snippet ranges [start, end) of the clips of one video (module docstring).

    Raises:
        ConfigError: `clip_s` shorter than two snippets.
    """
    per = round(clip_s / feats.snippet_s) if math.isfinite(clip_s) else 0  # snippets a clip
    if per < 2:
        raise ConfigError(
            f"clip_s={clip_s!r}: a clip must hold at least two snippets of {feats.snippet_s:.4g} s"
        )
    n = len(feats.valid)
    inside = np.zeros(n + 1, dtype=bool)  # inside[c]: a cut before snippet c splits an expression
    for e in record.expressions:
        first = snippet_of_frame(record, e.onset, feats.snippet_s)
        last = snippet_of_frame(record, e.offset, feats.snippet_s)
        inside[max(first + 1, 0) : max(min(last + 1, n), 0)] = True
    cuts = [0]
    while cuts[-1] + per < n:
        cut = cuts[-1] + per
        while cut < n and inside[cut]:
            cut += 1
        if n - cut < per / 2:  # a short tail joins the clip before it
            break
        cuts.append(cut)
    cuts.append(n)
    return list(itertools.pairwise(cuts))


def _held(
    record: VideoRecord, items: tuple, start_frame: int, end_frame: int
) -> list[tuple[int, int, int | None, object]]:
    """(onset, offset, apex, item) in clip frames of the items whose apex lies in the clip."""
    held = []
    for item in items:
        apex = item.apex if item.apex is not None else (item.onset + item.offset) // 2
        if not start_frame <= record.frame_position(apex) < end_frame:
            continue
        last = end_frame - start_frame - 1
        onset = min(max(record.frame_position(item.onset) - start_frame, 0), last)
        offset = min(max(record.frame_position(item.offset) - start_frame, onset), last)
        mark = None
        if item.apex is not None:
            mark = min(max(record.frame_position(item.apex) - start_frame, onset), offset)
        held.append((onset, offset, mark, item))
    return held


def cut_into_clips(
    record: VideoRecord, feats: VideoFeatures, clip_s: float
) -> list[tuple[VideoRecord, VideoFeatures]]:
    """One training video as clips of about `clip_s` seconds (module docstring).

    Args:
        record: the video and its annotations.
        feats: its snippet features (as the network sees them).
        clip_s: the clip length in seconds (at least two snippets).

    Returns:
        (record, features) per clip, ids ``VIDEO@START`` (START: the first snippet); a video of
        less than a clip and a half comes back as one clip.

    Raises:
        ConfigError: `clip_s` shorter than two snippets.
    """
    clips = []
    for start, end in clip_bounds(record, feats, clip_s):
        start_frame = round(start * feats.snippet_frames)
        end_frame = round(end * feats.snippet_frames)
        expressions = tuple(
            Interval(onset, offset, item.type, apex, item.score)
            for onset, offset, apex, item in _held(record, record.expressions, start_frame, end_frame)
        )
        held_blinks = _held(record, record.blinks, start_frame, end_frame)
        blinks = tuple(Blink(onset, offset, apex) for onset, offset, apex, _ in held_blinks)
        name = f"{record.video}@{start}"
        clip = dataclasses.replace(
            record,
            video=name,
            expressions=expressions,
            blinks=blinks,
            first_frame=0,
            frame_runs=None,
            n_frames=end_frame - start_frame,
        )
        part = dataclasses.replace(
            feats,
            video=name,
            motion=feats.motion[start:end],
            geometry=feats.geometry[start:end],
            valid=feats.valid[start:end],
            first_frame=0,
        )
        clips.append((clip, part))
    return clips
