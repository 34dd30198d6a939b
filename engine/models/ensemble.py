"""Several networks of one recipe whose proposal scores are averaged (a seed ensemble).

Networks trained alike from different seeds make different mistakes on a new person; the mean of
their scores is steadier than any one of them. The members share one `NetworkConfig`, so they
share the receptive field and the look-ahead, and an ensemble streams exactly like one network.
The averaging is done on the method's proposal scores (`score_tensors`), not on raw outputs,
whose meaning (logits, intensities, embeddings) differs by head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from engine.models.config import NetworkConfig
from engine.models.spotter import SpottingNetwork, build_network
from stream.errors import ConfigError

MAX_MEMBERS = 16


class NetworkEnsemble(nn.Module):
    """Member networks of one configuration; scored through `ensemble_scores`.

    Attributes:
        members: the networks (a ModuleList; its state dict keys are ``members.<i>.<name>``).
        config: their common configuration.
        receptive_field, lookahead: as every member's (`SpottingNetwork`).
    """

    def __init__(self, members: Sequence[SpottingNetwork]) -> None:
        super().__init__()
        if not 2 <= len(members) <= MAX_MEMBERS:
            raise ConfigError(f"network ensemble: {len(members)} members, expected 2 to {MAX_MEMBERS}")
        configs = {m.config for m in members}
        if len(configs) != 1:
            raise ConfigError("network ensemble: the members' network configurations differ")
        self.members = nn.ModuleList(members)
        self.config: NetworkConfig = members[0].config
        self.receptive_field = members[0].receptive_field
        self.lookahead = members[0].lookahead

    def forward(self, motion: Tensor, geometry: Tensor, valid: Tensor) -> list[dict[str, Tensor]]:
        """Every member's outputs, in member order."""
        return [m(motion, geometry, valid) for m in self.members]


def build_ensemble(config: NetworkConfig, members: int) -> SpottingNetwork | NetworkEnsemble:
    """An untrained network (``members == 1``) or ensemble of ``members`` networks."""
    if isinstance(members, bool) or not isinstance(members, int) or not 1 <= members <= MAX_MEMBERS:
        raise ConfigError(f"network ensemble members={members!r}: expected an integer in [1, {MAX_MEMBERS}]")
    if members == 1:
        return build_network(config)
    return NetworkEnsemble([build_network(config) for _ in range(members)])


def ensemble_scores(network: nn.Module, method, motion: Tensor, geometry: Tensor, valid: Tensor):
    """Proposal scores of a network or an ensemble: the method's ``score_tensors`` of each member,
    averaged over the members (float32, in one fixed order, so offline and live agree exactly).

    Returns:
        (class_scores (B, T, 2), actionness (B, T)).
    """
    if not isinstance(network, NetworkEnsemble):
        return method.score_tensors(network(motion, geometry, valid))
    scored = [method.score_tensors(out) for out in network(motion, geometry, valid)]
    cls = torch.stack([c for c, _ in scored]).mean(dim=0)
    act = torch.stack([a for _, a in scored]).mean(dim=0)
    return cls, act
