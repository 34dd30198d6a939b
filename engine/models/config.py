"""Frozen, validated configuration of a spotting network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from stream.config import refuse_unknown_keys
from stream.errors import ConfigError


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"network config {name}={value!r}: must be an integer in [{lo}, {hi}]")


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
            before they reach the network (``calibration.baseline``); None: no neutral baseline.
            Not a layer: the trainer, `predict` and the live scorer apply it, per video / stream.
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

    def __post_init__(self) -> None:
        if not isinstance(self.network, str) or not self.network:
            raise ConfigError(f"network config network={self.network!r}: must be a non-empty name")
        _check_int("motion_dim", self.motion_dim, 1, 65536)
        _check_int("geometry_dim", self.geometry_dim, 1, 65536)
        _check_int("embed_dim", self.embed_dim, 2, 1024)
        _check_int("window", self.window, 1, 4096)
        _check_int("kernel_size", self.kernel_size, 1, 15)
        raw = self.dilations
        if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
            raise ConfigError(f"network config dilations={raw!r}: must be a sequence of integers")
        # Lists (from JSON) become tuples so the config stays hashable.
        object.__setattr__(self, "dilations", tuple(raw))
        for d in self.dilations:
            _check_int("dilations", d, 1, 64)
        if len(self.dilations) > 8:
            raise ConfigError(f"network config dilations={raw!r}: at most 8 blocks")
        if not isinstance(self.causal, bool):
            raise ConfigError(f"network config causal={self.causal!r}: must be true or false")
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
        if (
            isinstance(self.dropout, bool)
            or not isinstance(self.dropout, int | float)
            or not 0.0 <= self.dropout < 1.0
        ):
            raise ConfigError(f"network config dropout={self.dropout!r}: must be a number in [0, 1)")

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
