"""Frozen, validated configuration of a spotting network."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from stream.config import check_number, refuse_unknown_keys
from stream.errors import ConfigError

#: The T-CAM's columns (background first) and the action branch's / class scores' columns.
TCAM_CLASSES: tuple[str, ...] = ("background", "me", "mae")
ACTION_CLASSES: tuple[str, ...] = ("me", "mae")

#: The largest look-ahead in snippets (256 snippets of 4 frames at 30 fps ~ 34 s).
MAX_LOOKAHEAD = 256
# How far a look-ahead in seconds may fall from a whole number of hops (in hops): 0.02 frames of
# the default 4-frame hop, so that a rounded value such as 0.2667 s (8/30 s) is taken as 2 hops.
_WHOLE_HOP_TOLERANCE = 0.005


def lookahead_snippets(seconds: object, hop_s: float, name: str = "lookahead_s") -> int:
    """A look-ahead in seconds as a whole number of snippet hops (``NetworkConfig.lookahead``).

    Args:
        seconds: the look-ahead in seconds (>= 0).
        hop_s: seconds per snippet of the feature configuration (``FeatureConfig.hop_s``).
        name: what to call the value in errors (e.g. the command-line option ``--lookahead-s``).

    Returns:
        L in snippets, in [0, MAX_LOOKAHEAD].

    Raises:
        ConfigError: a negative or non-numeric value, one that is not a whole number of hops
            (naming `name`, the hop and the nearest whole values), or more than MAX_LOOKAHEAD hops.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < math.inf:
        raise ConfigError(f"{name}={seconds!r}: must be a number of seconds >= 0")
    hops = seconds / hop_s
    n = round(hops)
    if abs(hops - n) > _WHOLE_HOP_TOLERANCE:
        lo, hi = math.floor(hops), math.ceil(hops)
        raise ConfigError(
            f"{name}={seconds!r} s is {hops:.3f} snippets of hop_s={hop_s:.6g} s: it must be a whole number "
            f"of snippets, e.g. {lo * hop_s:.6g} s ({lo}) or {hi * hop_s:.6g} s ({hi})"
        )
    if n > MAX_LOOKAHEAD:
        raise ConfigError(
            f"{name}={seconds!r} s is {n} snippets of {hop_s:.6g} s: at most {MAX_LOOKAHEAD} snippets"
        )
    return n


@dataclass(frozen=True)
class NetworkConfig:
    """Hyper-parameters of a spotting network (see ``engine.models.spotter.NETWORKS``).

    Attributes:
        network: registry name of the architecture ("mcwes": CSCM two-stream; "gim": concatenation).
        motion_dim: motion features per snippet Dm (engine.bundle.feature_dims of the feature
            configuration; 153 for one flow scale).
        geometry_dim: geometry/appearance features per snippet Dg (153).
        embed_dim: width E of the hidden features.
        window: causal window W in snippets for CSCM's running mean and self-attention
            (32 snippets of 8 frames at 30 fps ~ 8.5 s).
        kernel_size: taps of every temporal convolution.
        dilations: dilations of the fused temporal backbone, one causal conv block each.
        causal: True for the live model; False keeps the paper's global (whole-video) forms.
        dropout: dropout rate in [0, 1).
        input_norm: standardise each input feature with the training set's mean and standard
            deviation (stored in the network, so bundles and exported graphs carry them). On by
            default: raw features differ in scale by orders of magnitude (flow in px, texture
            change), and without it the `full` upper bound underfits its own training subjects
            (training F1 0.55 against 0.93 with it; docs/results.md).
        neutral_s: seconds of a person's resting face from which their features are normalised
            before they reach the network (``calibration.neutral``); None: no neutral baseline.
            Not a layer: the trainer, `predict` and the live scorer apply it, per video / stream.
        lookahead: L, snippets past the scored snippet the network may see (causal only; 0:
            strictly causal). The score of snippet s then depends on snippets
            ``s - receptive_field + 1 .. s + L``, so the live scorer emits it when snippet s + L
            arrives: every score, hence every event, comes L snippets (L * hop_s seconds) later.
            Set in seconds with ``mespot train --lookahead-s`` (`lookahead_snippets`).
    """

    network: str = "mcwes"
    motion_dim: int = 153
    geometry_dim: int = 153
    embed_dim: int = 64
    window: int = 32
    kernel_size: int = 3
    dilations: tuple[int, ...] = (1, 2)
    causal: bool = True
    dropout: float = 0.1
    input_norm: bool = True
    neutral_s: float | None = None
    lookahead: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.network, str) or not self.network:
            raise ConfigError(f"network config network={self.network!r}: must be a non-empty name")
        check_number("network config", "motion_dim", self.motion_dim, 1, 65536, integer=True)
        check_number("network config", "geometry_dim", self.geometry_dim, 1, 65536, integer=True)
        check_number("network config", "embed_dim", self.embed_dim, 2, 1024, integer=True)
        check_number("network config", "window", self.window, 1, 4096, integer=True)
        check_number("network config", "kernel_size", self.kernel_size, 1, 15, integer=True)
        raw = self.dilations
        if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
            raise ConfigError(f"network config dilations={raw!r}: must be a sequence of integers")
        # Lists (from JSON) become tuples so the config stays hashable.
        object.__setattr__(self, "dilations", tuple(raw))
        for d in self.dilations:
            check_number("network config", "dilations", d, 1, 64, integer=True)
        if len(self.dilations) > 8:
            raise ConfigError(f"network config dilations={raw!r}: at most 8 blocks")
        if not isinstance(self.causal, bool):
            raise ConfigError(f"network config causal={self.causal!r}: must be true or false")
        check_number("network config", "lookahead", self.lookahead, 0, MAX_LOOKAHEAD, integer=True)
        if self.lookahead > 0 and not self.causal:
            raise ConfigError(
                f"network config lookahead={self.lookahead!r}: a look-ahead applies to the causal network "
                "only (causal=False already sees the whole sequence); use lookahead=0"
            )
        if self.neutral_s is not None and (
            isinstance(self.neutral_s, bool)
            or not isinstance(self.neutral_s, int | float)
            or not 0.1 <= self.neutral_s <= 600
        ):
            raise ConfigError(
                f"network config neutral_s={self.neutral_s!r}: must be None or seconds in [0.1, 600]"
            )
        if not isinstance(self.input_norm, bool):
            raise ConfigError(f"network config input_norm={self.input_norm!r}: must be true or false")
        check_number("network config", "dropout", self.dropout, 0.0, 1.0, hi_open=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkConfig:
        """Build from a dict (e.g. read from JSON); unknown keys fail."""
        refuse_unknown_keys(cls, data, "network config")
        return cls(**dict(data))
