"""Spotting networks: causal temporal layers, the CSCM embedding, the MC-WES / GIM heads.

The configuration (`NetworkConfig`) and the class names need no torch; the networks themselves
are imported, with torch, on first access (a bundle read for ONNX or TensorRT never builds one).
"""

from __future__ import annotations

from engine.models.config import (
    ACTION_CLASSES,
    MAX_LOOKAHEAD,
    TCAM_CLASSES,
    NetworkConfig,
    lookahead_snippets,
)
from stream.registry import lazy_attributes

_TORCH_NAMES = {
    "CSCM": "engine.models.cscm",
    "ConcatEmbedding": "engine.models.cscm",
    "CSCMEmbedding": "engine.models.cscm",
    "CausalConv1d": "engine.models.layers",
    "TemporalBlock": "engine.models.layers",
    "chain_receptive_field": "engine.models.layers",
    "NETWORKS": "engine.models.spotter",
    "OUTPUT_NAMES": "engine.models.spotter",
    "SpottingNetwork": "engine.models.spotter",
    "build_network": "engine.models.spotter",
    "parameter_count": "engine.models.spotter",
    "NetworkEnsemble": "engine.models.ensemble",
    "build_ensemble": "engine.models.ensemble",
    "ensemble_scores": "engine.models.ensemble",
}


__getattr__ = lazy_attributes(__name__, _TORCH_NAMES)


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
    "NetworkEnsemble",
    "SpottingNetwork",
    "TemporalBlock",
    "build_ensemble",
    "build_network",
    "chain_receptive_field",
    "ensemble_scores",
    "lookahead_snippets",
    "parameter_count",
]
