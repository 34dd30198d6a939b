"""Synthetic labelled face videos for training, measuring and demonstrating spotters.

Real spotting datasets are licensed and absent here, so mespot renders its own: real face photos
animated by action units (displacement fields anchored on face-mesh landmarks), with micro- and
macro-expressions to find and distractors a spotter must not report (blinks, head motion,
lighting changes, sensor noise, compression). See docs/synthspot.md.

Modules:
    actions   action units as landmark-anchored displacement kernels; the temporal profile
    identity  subjects from base photos (shape, tone, light, mirror, framing); landmarks once
    timeline  the seeded script of events (`Timeline`, `TimelineConfig`)
    render    frames from an identity and a timeline (`Renderer`, `write_video`)
    dataset   a whole dataset on disk, its statistics, the SynthSpot-v1 recipe
    source    the ``sim://`` live source (importing it registers the scheme)
    cli       the ``mespot synth`` subcommand
"""

from stream.synth.actions import ACTION_UNITS, EXPRESSION_AUS, ActionUnit, Kernel, profile
from stream.synth.dataset import RECIPES, SYNTHSPOT_V1, DatasetRecipe, timeline_stats, write_dataset
from stream.synth.identity import BaseFace, FaceNotFound, Identity, IdentitySpec, load_faces, make_identities
from stream.synth.render import Renderer, write_video
from stream.synth.timeline import (
    AUSpec,
    Blink,
    Envelope,
    Expression,
    FrameState,
    HeadMove,
    LightChange,
    Timeline,
    TimelineConfig,
)

__all__ = [
    "ACTION_UNITS",
    "EXPRESSION_AUS",
    "RECIPES",
    "SYNTHSPOT_V1",
    "AUSpec",
    "ActionUnit",
    "BaseFace",
    "Blink",
    "DatasetRecipe",
    "Envelope",
    "Expression",
    "FaceNotFound",
    "FrameState",
    "HeadMove",
    "Identity",
    "IdentitySpec",
    "Kernel",
    "LightChange",
    "Renderer",
    "Timeline",
    "TimelineConfig",
    "load_faces",
    "make_identities",
    "profile",
    "timeline_stats",
    "write_dataset",
    "write_video",
]
