"""The scorer contract: what an exported window scorer takes and gives, and what it says about
itself. A leaf module: the runtime backends and the exporter both build on it, neither on the
other.

A window scorer takes ``motion`` (B, T, Dm), ``geometry`` (B, T, Dg) and ``valid`` (B, T) bool,
oldest snippet first, and gives ``class_scores`` (B, T, 2) (ME, MaE) and ``actionness`` (B, T);
an ONNX graph carries the bundle's facts as ``mespot.*`` metadata (`onnx_metadata`).
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.bundle import BUNDLE_FORMAT, WEIGHTS, Bundle

INPUT_NAMES: tuple[str, ...] = ("motion", "geometry", "valid")
OUTPUT_NAMES: tuple[str, ...] = ("class_scores", "actionness")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
METADATA_PREFIX = "mespot."


def require_causal(bundle: Bundle, error: type[Exception]) -> None:
    """Refuse a non-causal network (the one check, for the exporter and every backend alike).

    Raises:
        error: the bundle's network sees the whole sequence, so it cannot score a sliding window.
    """
    if not bundle.causal or bundle.receptive_field is None:
        raise error(
            f"{bundle.path}: the network is non-causal (NetworkConfig.causal=False: the papers' global "
            "pooling and attention over the whole video), so it cannot score a sliding window, live "
            "or exported; train and bundle the causal network (whole videos: engine.train.predict)"
        )


def default_onnx_name(precision: str) -> str:
    """File name of the ONNX scorer of a precision inside a bundle."""
    return "scorer.onnx" if precision == "fp32" else f"scorer.{precision}.onnx"


def onnx_metadata(bundle: Bundle, window: int, precision: str) -> dict[str, str]:
    """The ``metadata_props`` embedded in an exported graph (all values are strings)."""
    nc = bundle.network_config
    return {
        f"{METADATA_PREFIX}{k}": v
        for k, v in {
            "bundle_format": BUNDLE_FORMAT,
            "feature_digest": bundle.feature_digest,
            "feature_config": json.dumps(bundle.feature_config.to_dict(), sort_keys=True),
            "window": str(window),
            "receptive_field": str(bundle.receptive_field),
            "lookahead": str(bundle.lookahead),
            "lookahead_s": repr(bundle.lookahead_s),
            "classes": ",".join(bundle.classes),
            "method": bundle.method_name,
            "network": nc.network,
            "precision": precision,
            "weights_sha256": str(bundle.files[WEIGHTS]["sha256"]),
            "inputs": f"motion (B,T,{nc.motion_dim}), geometry (B,T,{nc.geometry_dim}), valid (B,T) bool; "
            f"1 <= T <= {window}, oldest snippet first",
            "outputs": "class_scores (B,T,2) me/mae, actionness (B,T); "
            + (
                "the last row scores the newest snippet"
                if bundle.lookahead == 0
                else f"row T-1-{bundle.lookahead} scores the newest snippet whose look-ahead of "
                f"{bundle.lookahead} snippets is complete (the last {bundle.lookahead} rows: end of stream)"
            ),
        }.items()
    }


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``mespot.*`` metadata of an ONNX graph, keys without the prefix (no weights loaded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {
        p.key[len(METADATA_PREFIX) :]: p.value
        for p in model.metadata_props
        if p.key.startswith(METADATA_PREFIX)
    }
