"""The `Method` interface: what a training regime may see (targets), how it is scored (loss) and
how its outputs become proposal scores.

A method owns only supervision and losses; the network is shared (``engine.models``) and its
forward stays export-clean (DESIGN: losses and post-processing live outside the network). Each
method derives its targets from the label view it is entitled to (``engine.data.labels``): the
fully supervised upper bound uses `full_labels`, the weak methods video-level or point labels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from engine.data.features import VideoFeatures
from engine.data.records import VideoRecord
from engine.methods.config import MethodConfig
from engine.proposals import ProposalConfig
from stream.errors import ConfigError


def eval_outputs(
    network: nn.Module, videos: Sequence[tuple[VideoRecord, VideoFeatures]]
) -> Iterator[tuple[dict[str, Tensor], Tensor]]:
    """The network's outputs on each whole video, in eval mode under no_grad (the `Method`
    contract for pseudo labels): ((outputs, batch of 1), valid (T,) bool) per video, in order.

    The network's mode is restored when the iteration ends (or is abandoned), so labels made
    from these outputs depend on the weights alone, never on a dropout draw. The caller's loop
    body runs without grad too (the no_grad context spans the iteration).
    """
    was_training = network.training
    network.eval()
    device = next(network.parameters()).device
    try:
        with torch.no_grad():
            for _, feats in videos:
                motion = torch.as_tensor(np.asarray(feats.motion, dtype=np.float32), device=device)
                geometry = torch.as_tensor(np.asarray(feats.geometry, dtype=np.float32), device=device)
                valid = torch.as_tensor(np.asarray(feats.valid, dtype=bool), device=device)
                yield network(motion[None], geometry[None], valid[None]), valid
    finally:
        network.train(was_training)


class Method(ABC):
    """A training regime: targets from its label view, a loss on the network outputs, scores.

    Attributes:
        name: registry name (``engine.methods.METHODS``).
        config_type: the method's own `MethodConfig` subclass.
        snippet_targets: target names that are per-snippet arrays (T, ...), cropped with the
            training window; every other target is per video and passed whole.
        whole_videos: train on whole videos (a batch is `batch_size` videos, zero-padded to the
            longest, padding invalid) instead of random windows. Weak labels describe a whole
            video (MC-WES) or sparse points in it, so a random window would carry labels it
            does not contain.
        training_defaults: `TrainConfig` fields this method trains with unless told otherwise
            (epochs, batch_size, lr: the paper's schedule where it fits our data).
        config: the validated configuration.
        network: the network it trains (methods with memory banks may read its sizes).
    """

    name: ClassVar[str]
    config_type: ClassVar[type[MethodConfig]]
    snippet_targets: ClassVar[tuple[str, ...]] = ()
    whole_videos: ClassVar[bool] = False
    training_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, config: MethodConfig | Mapping[str, Any] | None, network: nn.Module) -> None:
        """Args:
        config: the method's configuration, a dict of its fields, or None for the defaults.
        network: the network the method trains.

        Raises:
            ConfigError: a config of another method's type, unknown keys or bad values.
        """
        if config is None:
            config = self.config_type()
        elif isinstance(config, Mapping):
            config = self.config_type.from_dict(config)
        elif not isinstance(config, self.config_type):
            raise ConfigError(
                f"method {self.name!r} takes a {self.config_type.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.network = network

    @abstractmethod
    def targets(
        self, video: VideoRecord, feats: VideoFeatures, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """The supervision of one video, on its snippet grid (T = len(feats.valid))."""

    def prepare(self, targets: Sequence[Mapping[str, np.ndarray]]) -> None:  # noqa: B027
        """Fit data-dependent loss constants (class weights) on all training targets; default none."""

    def on_step(
        self,
        step: int,
        epoch: int,
        network: nn.Module,
        videos: Sequence[tuple[VideoRecord, VideoFeatures]],
        targets: Sequence[Mapping[str, np.ndarray]],
        rng: np.random.Generator,
    ) -> list[dict[str, np.ndarray]] | None:
        """Called by the trainer before every optimiser step; default: nothing changes.

        Methods whose supervision evolves with the model (pseudo labels after pre-training
        iterations, staged schedules) update their state here and may return new targets for
        all training videos, which replace the old ones from this step on. The network is in
        training mode; a method that runs it to make pseudo labels must do so under
        ``torch.no_grad()`` and in eval mode, and restore training mode after.

        Args:
            step: optimiser steps done so far (0 before the first).
            epoch: the current epoch (0-based).
            network: the network being trained.
            videos: the training videos (record, features), in the order of `targets`.
            targets: the current targets of every training video.
            rng: the trainer's seeded generator (for reproducible random choices).

        Returns:
            New targets for every video (same order and keys), or None to keep the current ones.
        """
        return None

    @abstractmethod
    def loss(
        self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], valid: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """The scalar training loss and its named parts (floats, for the history).

        Args:
            outputs: the network's outputs (``engine.models.OUTPUT_NAMES``), batch first.
            targets: the method's targets, batched (B, T, ...) / (B, ...).
            valid: (B, T) bool snippets that exist and carry a face.
        """

    @classmethod
    def default_proposals(cls) -> ProposalConfig:
        """The proposal configuration this method's scores are meant for (the paper's choice).

        Default: spans from actionness runs at several thresholds, OIC on actionness, typed by
        the higher class probability, class-wise NMS.
        """
        return ProposalConfig(mode="threshold", oic_source="actionness", type_rule="class", nms="class")

    @classmethod
    def operating_grid(cls) -> Mapping[str, Sequence[Any]]:
        """The `ProposalConfig` fields and values the trainer searches on the training videos
        (``engine.train.choose_operating_point``); default ``engine.proposals.OPERATING_GRID``."""
        from engine.proposals import OPERATING_GRID

        return OPERATING_GRID

    @abstractmethod
    def score_tensors(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Proposal scores from network outputs, in torch ops only (exported into the ONNX scorer).

        Args:
            outputs: the network's outputs, batch first.

        Returns:
            (class_scores (B, T, 2) ME/MaE in [0, 1], actionness (B, T) in [0, 1]).
        """

    def scores(self, outputs: Mapping[str, Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """`score_tensors` of a batch-size-1 output as float64 numpy: ((T, 2), (T,))."""
        cls, act = self.score_tensors(outputs)
        return (
            cls[0].detach().double().cpu().numpy().copy(),
            act[0].detach().double().cpu().numpy().copy(),
        )
