"""Spotting networks and their registry ``NETWORKS``.

One network body serves both weakly-supervised methods; the registry name picks the input fusion:

- ``"mcwes"``: CSCM two-stream embedding (MC-WES sec. 3.3), the live default.
- ``"gim"``: per-modality embeddings concatenated (GIM uses plain concatenated features).

Both return the same outputs, so losses, proposals and export never branch on the architecture:

- ``tcam`` (B, T, 3): T-CAM logits for ``TCAM_CLASSES`` (background, ME, MaE) from the classifier
  on the fused embedding (MC-WES snippet spotting).
- ``attention`` (B, T): class-agnostic foreground probability, the mean of the two modal heads;
  ``attention_motion`` / ``attention_geometry`` (B, T) are the modal-specific ones (MC-WES).
- ``intensity`` (B, T): expression intensity in [0, 1] from the regression branch (GIM).
- ``action`` (B, T, 2): action logits for ``ACTION_CLASSES`` (ME, MaE) (GIM classification branch).
- ``embedding`` (B, T, E): fused features (MC-WES segment-level feature consistency).
- ``intensity_embedding`` (B, T, E): the intensity branch's hidden features (GIM's Gaussian model).

Probabilities (attention, intensity) are zero at invalid snippets so nothing fires on a lost face.

Look-ahead. The network body is causal: its output at position p depends on inputs <= p. With a
look-ahead of L snippets (``NetworkConfig.lookahead``) the score of snippet s is the body's output
at s + L: the inputs are padded at the end with L zero snippets marked invalid (what the pipeline
emits for a snippet without features), the body runs over T + L positions, and positions
``L .. L + T - 1`` are returned. A score at s therefore depends on snippets
``s - receptive_field + 1 .. s + L``; the last L scores of a sequence see the invalid padding in
place of the snippets that never came (exactly what the live scorer computes at end of stream).
Probabilities are masked by the validity of the scored snippet s. L = 0 is the strictly causal
network, unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.config import ACTION_CLASSES, TCAM_CLASSES, NetworkConfig
from engine.models.cscm import ConcatEmbedding, CSCMEmbedding
from engine.models.layers import TemporalBlock, chain_receptive_field
from stream.errors import ConfigError
from stream.registry import Registry

OUTPUT_NAMES: tuple[str, ...] = (
    "tcam",
    "attention",
    "attention_motion",
    "attention_geometry",
    "intensity",
    "action",
    "embedding",
    "intensity_embedding",
)


class _ScoreHead(nn.Module):
    """TemporalBlock -> pointwise projection: per-snippet logits (and the hidden features)."""

    def __init__(self, dim: int, hidden: int, out: int, kernel_size: int, causal: bool, dropout: float):
        super().__init__()
        self.block = TemporalBlock(dim, hidden, kernel_size, 1, causal, dropout)
        self.proj = nn.Linear(hidden, out)
        self.receptive_field = self.block.receptive_field

    def forward(self, x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x (B, T, E), valid (B, T). Returns (logits (B, T, out), hidden (B, T, H))."""
        hidden = self.block(x, valid)  # (B, T, H)
        return self.proj(hidden), hidden  # (B, T, out), (B, T, H)


class SpottingNetwork(nn.Module):
    """Two-modality spotting network with MC-WES attention/T-CAM heads and the GIM two-branch head.

    Attributes:
        config: the validated configuration it was built from.
        receptive_field: snippets of history (<= t) any output at t depends on (causal
            variant); None for the non-causal variant, which sees the whole sequence.
        lookahead: L, snippets after t an output at t may depend on (0 for the strictly causal
            and for the non-causal variant): the output at t depends on snippets
            ``t - receptive_field + 1 .. t + L``.
    """

    def __init__(self, config: NetworkConfig, fusion: str = "cscm") -> None:
        """Build the network.

        Args:
            config: hyper-parameters.
            fusion: "cscm" (MC-WES) or "concat" (GIM) input fusion.

        Raises:
            ConfigError: unknown fusion.
        """
        super().__init__()
        c = config
        self.config = c
        e, k = c.embed_dim, c.kernel_size
        if fusion == "cscm":
            self.fusion: nn.Module = CSCMEmbedding(
                c.motion_dim, c.geometry_dim, e, c.window, k, c.causal, c.dropout
            )
        elif fusion == "concat":
            self.fusion = ConcatEmbedding(c.motion_dim, c.geometry_dim, e, c.dropout)
        else:
            raise ConfigError(f"network fusion={fusion!r}: choose 'cscm' or 'concat'")
        # Modal-specific attention generators (MC-WES): foreground probability per modality.
        self.attention_motion = _ScoreHead(e, e // 2, 1, k, c.causal, c.dropout)
        self.attention_geometry = _ScoreHead(e, e // 2, 1, k, c.causal, c.dropout)
        # Fused temporal backbone: dilated causal convolutions over the concatenated modalities.
        widths = [2 * e] + [e] * len(c.dilations)
        self.backbone = nn.ModuleList(
            TemporalBlock(widths[i], e, k, d, c.causal, c.dropout) for i, d in enumerate(c.dilations)
        )
        self.classifier = nn.Linear(e, len(TCAM_CLASSES))  # T-CAM logits
        # GIM two-branch head: intensity regression and action classification.
        self.intensity_branch = _ScoreHead(e, e, 1, k, c.causal, c.dropout)
        self.action_branch = _ScoreHead(e, e, len(ACTION_CLASSES), k, c.causal, c.dropout)
        if not c.dilations:
            # Without backbone blocks the fused concat is 2E wide; project to E pointwise.
            self.squeeze: nn.Module = nn.Linear(2 * e, e)
        else:
            self.squeeze = nn.Identity()

        if c.input_norm:  # set from the training features by `set_input_statistics`
            self.register_buffer("motion_mean", torch.zeros(c.motion_dim))
            self.register_buffer("motion_scale", torch.ones(c.motion_dim))
            self.register_buffer("geometry_mean", torch.zeros(c.geometry_dim))
            self.register_buffer("geometry_scale", torch.ones(c.geometry_dim))

        fusion_rf = int(self.fusion.receptive_field)
        trunk = chain_receptive_field(fusion_rf, *(b.receptive_field for b in self.backbone))
        self.receptive_field: int | None = (
            max(
                chain_receptive_field(fusion_rf, self.attention_motion.receptive_field),
                chain_receptive_field(trunk, self.intensity_branch.receptive_field),
            )
            if c.causal
            else None
        )
        self.lookahead: int = c.lookahead if c.causal else 0

    def forward(self, motion: Tensor, geometry: Tensor, valid: Tensor) -> dict[str, Tensor]:
        """Score every snippet; output t depends only on snippets <= t + lookahead when causal.

        Args:
            motion: motion features. # (B, T, Dm)
            geometry: geometry/appearance features. # (B, T, Dg)
            valid: snippet validity. # (B, T) bool

        Returns:
            the tensors named in ``OUTPUT_NAMES`` (shapes in the module docstring).
        """
        v = valid.to(motion.dtype)  # (B, T): validity of the scored snippets
        n = self.lookahead
        if n > 0:
            # L invalid zero snippets after the last one: the body's output at s + L scores s.
            motion = F.pad(motion, (0, 0, 0, n))  # (B, T + L, Dm)
            geometry = F.pad(geometry, (0, 0, 0, n))  # (B, T + L, Dg)
            valid = torch.cat([valid, torch.zeros_like(valid[:, :1]).expand(-1, n)], dim=1)  # (B, T + L)
        out = self._body(motion, geometry, valid)  # (B, T + L, ...)
        if n > 0:
            out = {k: x[:, n:] for k, x in out.items()}  # (B, T, ...): position s + L scores s
        a_motion = out["attention_motion"] * v  # (B, T)
        a_geometry = out["attention_geometry"] * v  # (B, T)
        return {
            "tcam": out["tcam"],
            "attention": 0.5 * (a_motion + a_geometry),  # class-agnostic, MC-WES sec. 3.2
            "attention_motion": a_motion,
            "attention_geometry": a_geometry,
            "intensity": out["intensity"] * v,  # (B, T)
            "action": out["action"],
            "embedding": out["embedding"],
            "intensity_embedding": out["intensity_embedding"],
        }

    def _body(self, motion: Tensor, geometry: Tensor, valid: Tensor) -> dict[str, Tensor]:
        """The causal body: output p from inputs <= p; probabilities not yet masked by validity.

        Args:
            motion: motion features. # (B, P, Dm)
            geometry: geometry/appearance features. # (B, P, Dg)
            valid: snippet validity. # (B, P) bool

        Returns:
            the tensors named in ``OUTPUT_NAMES`` but "attention", over the P positions.
        """
        if self.config.input_norm:
            motion = (motion - self.motion_mean) / self.motion_scale  # (B, P, Dm)
            geometry = (geometry - self.geometry_mean) / self.geometry_scale  # (B, P, Dg)
        o_motion, o_geometry = self.fusion(motion, geometry, valid)  # (B, P, E) each
        a_motion = torch.sigmoid(self.attention_motion(o_motion, valid)[0].squeeze(-1))  # (B, P)
        a_geometry = torch.sigmoid(self.attention_geometry(o_geometry, valid)[0].squeeze(-1))  # (B, P)
        x = torch.cat([o_motion, o_geometry], dim=-1)  # (B, P, 2E)
        for block in self.backbone:
            x = block(x, valid)  # (B, P, E)
        embedding = self.squeeze(x)  # (B, P, E)
        tcam = self.classifier(embedding)  # (B, P, 3)
        intensity_logit, intensity_embedding = self.intensity_branch(embedding, valid)  # (B, P, 1), (B, P, E)
        action, _ = self.action_branch(embedding, valid)  # (B, P, 2)
        return {
            "tcam": tcam,
            "attention_motion": a_motion,
            "attention_geometry": a_geometry,
            "intensity": torch.sigmoid(intensity_logit.squeeze(-1)),  # (B, P)
            "action": action,
            "embedding": embedding,
            "intensity_embedding": intensity_embedding,
        }


def set_input_statistics(network: SpottingNetwork, motion: Tensor, geometry: Tensor) -> None:
    """Store the per-feature mean and standard deviation of training snippets (input_norm).

    Args:
        network: a network built with ``input_norm=True``.
        motion: valid training snippets' motion features. # (N, Dm)
        geometry: their geometry features. # (N, Dg)

    Raises:
        ConfigError: the network has no input normalisation, or no snippet is given.
    """
    if not network.config.input_norm:
        raise ConfigError("set_input_statistics: the network was built with input_norm=False")
    if motion.shape[0] == 0:
        raise ConfigError("set_input_statistics: no valid training snippet")
    with torch.no_grad():
        for name, x in (("motion", motion), ("geometry", geometry)):
            x = x.to(torch.float64)
            getattr(network, f"{name}_mean").copy_(x.mean(dim=0))
            # A constant feature keeps scale 1 rather than blowing up by 1 / ~0.
            std = x.std(dim=0)
            getattr(network, f"{name}_scale").copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))


NETWORKS = Registry[SpottingNetwork]("network")


@NETWORKS.register("mcwes")
def _mcwes(config: NetworkConfig) -> SpottingNetwork:
    return SpottingNetwork(config, fusion="cscm")


@NETWORKS.register("gim")
def _gim(config: NetworkConfig) -> SpottingNetwork:
    return SpottingNetwork(config, fusion="concat")


def build_network(config: NetworkConfig) -> SpottingNetwork:
    """Build the network named by ``config.network``.

    Raises:
        ConfigError: the name is not registered (the message names the key and the choices).
    """
    if config.network not in NETWORKS:
        raise ConfigError(
            f"network config network={config.network!r}: choose one of {', '.join(NETWORKS.names())}"
        )
    return NETWORKS.build(config.network, config)


def parameter_count(module: nn.Module) -> int:
    """Trainable parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
