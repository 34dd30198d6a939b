"""Spotting networks: causal temporal layers, the CSCM embedding, the MC-WES / GIM heads."""

from engine.models.config import MAX_LOOKAHEAD, NetworkConfig, lookahead_snippets
from engine.models.cscm import CSCM, ConcatEmbedding, CSCMEmbedding
from engine.models.layers import CausalConv1d, TemporalBlock, chain_receptive_field
from engine.models.spotter import (
    ACTION_CLASSES,
    NETWORKS,
    OUTPUT_NAMES,
    TCAM_CLASSES,
    SpottingNetwork,
    build_network,
    parameter_count,
)

__all__ = [
    "ACTION_CLASSES",
    "CSCM",
    "MAX_LOOKAHEAD",
    "NETWORKS",
    "OUTPUT_NAMES",
    "TCAM_CLASSES",
    "CSCMEmbedding",
    "CausalConv1d",
    "ConcatEmbedding",
    "NetworkConfig",
    "SpottingNetwork",
    "TemporalBlock",
    "build_network",
    "chain_receptive_field",
    "lookahead_snippets",
    "parameter_count",
]
