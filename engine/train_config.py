"""`TrainConfig`: how a network is trained, validated on creation (`engine.train` runs it).

Its own module so that reading a bundle (`engine.bundle`, the runtime backends) never imports
the training loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.methods import METHODS
from engine.methods.config import METHOD_CONFIGS
from engine.models import NetworkConfig
from engine.proposals import ProposalConfig
from stream.config import check_number, refuse_unknown_keys
from stream.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Frozen, validated training configuration.

    Attributes:
        epochs: passes over the training data, in [1, 10000].
        batch_size: windows per step, in [1, 4096].
        window: training crop length in snippets, in [2, 100000] (64 snippets ~ 17 s at 8/30 s).
        steps_per_epoch: optimiser steps per epoch; None: enough windows to cover the training
            snippets once (at least one step).
        lr: Adam learning rate, in (0, 1].
        weight_decay: Adam L2 weight decay, in [0, 1].
        grad_clip: gradient norm clip, in (0, 1e6]; None: no clipping.
        seed: seeds torch (initialisation, dropout) and numpy (windows, targets).
        network: the network configuration.
        method: registry name of the method (``engine.methods.METHODS``).
        method_options: the method's own configuration fields (validated by the method).
        proposals: the base proposal configuration; `loso` tunes its thresholds / min_score.
            None: the method's own (`Method.default_proposals`).
        augment: strength of feature-space augmentation for new people, in [0, 2] (0: off):
            per training sample a motion gain (face size, expression strength), a constant
            geometry offset (face shape) and per-snippet noise, all in units of each
            feature's training standard deviation (`augment_batch`).
        ensemble: networks trained, in [1, 16]: member i is trained alike with seed ``seed + i``
            and the proposal scores are their mean (`engine.models.NetworkEnsemble`); 1: one
            network. Each member costs a full training and a forward when scoring.
        clip_s: whole-video methods only: train on the training videos cut into clips of about
            this many seconds, each labelled by the expressions it holds
            (`engine.data.clips`), as a dataset of short labelled clips would be; in [0.5,
            3600]. None: whole videos (the default). Scoring and evaluation stay on whole videos.
    """

    epochs: int = 30
    batch_size: int = 16
    window: int = 64
    steps_per_epoch: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float | None = 5.0
    seed: int = 0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    method: str = "full"
    method_options: Mapping[str, Any] = field(default_factory=dict)
    proposals: ProposalConfig | None = None
    augment: float = 0.0
    ensemble: int = 1
    clip_s: float | None = None

    def __post_init__(self) -> None:
        check_number("train config", "epochs", self.epochs, 1, 10_000, integer=True)
        check_number("train config", "augment", self.augment, 0.0, 2.0)
        check_number("train config", "batch_size", self.batch_size, 1, 4096, integer=True)
        check_number("train config", "window", self.window, 2, 100_000, integer=True)
        if self.steps_per_epoch is not None:
            check_number("train config", "steps_per_epoch", self.steps_per_epoch, 1, 1_000_000, integer=True)
        check_number("train config", "lr", self.lr, 0.0, 1.0, lo_open=True)
        check_number("train config", "weight_decay", self.weight_decay, 0.0, 1.0)
        if self.grad_clip is not None:
            check_number("train config", "grad_clip", self.grad_clip, 0.0, 1e6)
            if self.grad_clip <= 0:
                raise ConfigError(f"train config grad_clip={self.grad_clip!r}: must be > 0 or None")
        check_number("train config", "ensemble", self.ensemble, 1, 16, integer=True)
        if self.clip_s is not None:
            check_number("train config", "clip_s", self.clip_s, 0.5, 3600.0)
        check_number("train config", "seed", self.seed, 0, 2**63 - self.ensemble, integer=True)
        if not isinstance(self.network, NetworkConfig):
            raise ConfigError(
                f"train config network: must be a NetworkConfig, got {type(self.network).__name__}"
            )
        if self.method not in METHODS:
            raise ConfigError(
                f"train config method={self.method!r}: choose one of {', '.join(METHODS.names())}"
            )
        if self.proposals is None:
            object.__setattr__(self, "proposals", METHODS.get(self.method).default_proposals())
        if not isinstance(self.proposals, ProposalConfig):
            raise ConfigError(
                f"train config proposals: must be a ProposalConfig, got {type(self.proposals).__name__}"
            )
        if not isinstance(self.method_options, Mapping):
            raise ConfigError(f"train config method_options={self.method_options!r}: must be a mapping")
        # A private read-only copy: never shared with (or mutated through) the caller's dict.
        object.__setattr__(self, "method_options", MappingProxyType(dict(self.method_options)))
        if self.clip_s is not None and not METHODS.get(self.method).whole_videos:
            raise ConfigError(
                f"train config clip_s={self.clip_s!r}: method {self.method!r} trains on windows, not "
                "whole videos (set window instead)"
            )
        # Validate the method's options now rather than after the first fold's data loading.
        # (The configuration classes need no torch: reading a bundle does not import the method.)
        METHOD_CONFIGS[self.method].from_dict(self.method_options)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (nested configs as dicts)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["network"] = self.network.to_dict()
        d["proposals"] = self.proposals.to_dict()
        d["method_options"] = dict(self.method_options)
        if self.clip_s is None:  # whole videos: the runs before the option read alike
            del d["clip_s"]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. ``run.json``); unknown keys fail naming the known ones."""
        refuse_unknown_keys(cls, data, "train config")
        d = dict(data)
        if isinstance(d.get("network"), Mapping):
            d["network"] = NetworkConfig.from_dict(d["network"])
        if isinstance(d.get("proposals"), Mapping):
            d["proposals"] = ProposalConfig.from_dict(d["proposals"])
        return cls(**d)
