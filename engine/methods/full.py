"""The `full` method: per-snippet supervision, the fully supervised upper bound.

Every snippet is labelled background / ME / MaE (`engine.data.labels.full_labels`) and the T-CAM
logits are trained with a class-balanced cross-entropy, masked by snippet validity. About 96 % of
snippets are background, so without the weights the network learns to answer "background".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from engine.data.features import VideoFeatures
from engine.data.labels import BACKGROUND, full_labels
from engine.data.records import VideoRecord
from engine.methods.base import Method
from engine.methods.config import FullConfig


def balanced_weights(counts: np.ndarray, cap: float) -> np.ndarray:
    """Inverse-frequency class weights, each at most `cap` x background's, mean 1 over classes.

    Args:
        counts: (C,) snippets per class (background first); absent classes count as one.
        cap: largest ratio of a class weight to the background weight.
    """
    freq = np.maximum(counts.astype(np.float64), 1.0)  # (C,)
    w = freq.sum() / (len(freq) * freq)  # (C,)
    w = np.minimum(w, cap * w[BACKGROUND])
    return w / w.mean()


class FullMethod(Method):
    """Snippet-level cross-entropy on ``tcam`` against full labels (see the module docstring)."""

    name = "full"
    config_type = FullConfig
    snippet_targets = ("labels",)
    config: FullConfig

    def __init__(self, config: FullConfig | Mapping | None, network: torch.nn.Module) -> None:
        super().__init__(config, network)
        self.class_weights: np.ndarray | None = None  # (3,), set by prepare()

    def targets(
        self, video: VideoRecord, feats: VideoFeatures, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """``labels``: (T,) int64 class index (background 0, ME 1, MaE 2); rng is not needed."""
        onehot = full_labels(video, len(feats.valid), feats.snippet_s)  # (T, 3)
        return {"labels": onehot.argmax(axis=1).astype(np.int64)}

    def prepare(self, targets: Sequence[Mapping[str, np.ndarray]]) -> None:
        """Class weights from the label counts of all training videos."""
        counts = np.zeros(3, dtype=np.int64)
        for t in targets:
            counts += np.bincount(t["labels"], minlength=3)[:3]
        self.class_weights = balanced_weights(counts, self.config.max_class_weight)

    def _weights(self, labels: Tensor, valid: Tensor) -> Tensor | None:
        if not self.config.class_balance:
            return None
        if self.class_weights is None:  # prepare() not called: balance on this batch
            counts = torch.bincount(labels[valid], minlength=3).cpu().numpy()
            return torch.as_tensor(
                balanced_weights(counts, self.config.max_class_weight), dtype=torch.float32
            )
        return torch.as_tensor(self.class_weights, dtype=torch.float32)

    def loss(
        self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], valid: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """Class-weighted mean cross-entropy over the valid snippets."""
        logits = outputs["tcam"]  # (B, T, 3)
        labels = targets["labels"].long()  # (B, T)
        weight = self._weights(labels, valid)  # (3,) or None
        ce = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            labels.reshape(-1),
            reduction="none",
            label_smoothing=self.config.label_smoothing,
        )  # (B * T,)
        mask = valid.reshape(-1).to(ce.dtype)  # (B * T,)
        w = mask if weight is None else mask * weight.to(ce.device)[labels.reshape(-1)]
        # Weighted mean (as F.cross_entropy's own weighted reduction), zero if nothing is valid.
        loss = (ce * w).sum() / w.sum().clamp_min(1e-8)
        return loss, {"ce": float(loss.detach())}

    def score_tensors(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """ME/MaE softmax probabilities and actionness 1 - p(background)."""
        p = torch.softmax(outputs["tcam"], dim=-1)  # (B, T, 3)
        return p[..., 1:], 1.0 - p[..., BACKGROUND]
