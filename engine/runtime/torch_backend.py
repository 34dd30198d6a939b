"""The torch backend: the bundle's network and method in eval mode (the reference; always available)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from engine.bundle import Bundle
from engine.methods import Method
from engine.models import ensemble_scores
from engine.runtime.base import BACKENDS, Backend


class WindowScorer(nn.Module):
    """The exported tensor path: causal network -> `Method.score_tensors` over a window (for an
    ensemble, every member's, averaged: `engine.models.ensemble_scores`).

    Row t of its outputs sees rows <= t + L of the window (L: the network's look-ahead); the
    network pads the window's end with L invalid zero snippets itself.

    Attributes:
        network: the spotting network or network ensemble (eval mode).
        method: the method whose ``score_tensors`` turns outputs into proposal scores.
    """

    def __init__(self, network: nn.Module, method: Method) -> None:
        super().__init__()
        self.network = network
        self.method = method

    def forward(self, motion: Tensor, geometry: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """Score every snippet of the windows; row t sees only rows <= t + lookahead.

        Args:
            motion: motion features. # (B, T, Dm)
            geometry: geometry/appearance features. # (B, T, Dg)
            valid: snippet validity. # (B, T) bool

        Returns:
            (class_scores (B, T, 2) ME/MaE, actionness (B, T)).
        """
        return ensemble_scores(self.network, self.method, motion, geometry, valid)


@BACKENDS.register("torch")
class TorchBackend(Backend):
    """Runs `WindowScorer` in torch.

    Args:
        bundle: the bundle.
        window: W; None: the bundle's.
        device: torch device ("cpu" by default; "cuda" with a CUDA build of torch).
    """

    name = "torch"

    def __init__(self, bundle: Bundle, *, window: int | None = None, device: str = "cpu") -> None:
        super().__init__(bundle, window=window)
        self.device = torch.device(device)
        network = bundle.network()
        self.scorer = WindowScorer(network, bundle.method(network)).eval().to(self.device)

    def _score(
        self, motion: np.ndarray, geometry: np.ndarray, valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            cls, act = self.scorer(
                torch.from_numpy(motion).to(self.device),  # (B, T, Dm)
                torch.from_numpy(geometry).to(self.device),  # (B, T, Dg)
                torch.from_numpy(valid).to(self.device),  # (B, T)
            )
        return cls.float().cpu().numpy(), act.float().cpu().numpy()  # (B, T, 2), (B, T)

    def close(self) -> None:
        self.scorer = None  # type: ignore[assignment]
        super().close()
