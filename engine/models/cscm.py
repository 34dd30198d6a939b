"""Core Saliency Compensation Module (MC-WES sec. 3.3, eq. 1-6) in causal/windowed form.

For a main modality X_main and an auxiliary modality X_aux (both already embedded to width E):

    F_main = sigmoid(W_main . mean(X_main) + B_main)                 (1)  whole-video mean -> running
                                                                          mean over the last W snippets
    F_q    = W_q . X_main + B_q                                      (2)
    F_core = W_f . (softmax(F_q F_q^T) F_q) + B_f                    (3)  global -> masked self-attention
                                                                          over the last W snippets
    F_aux  = W_aux * (X_aux + F_core) + B_aux                        (4)  3-tap conv -> causal conv
    R      = sigmoid(F_aux . F_main)                                 (5)
    O_main = R . X_main                                              (6)

The paper's main/auxiliary pair (RGB / optical flow) maps to our geometry/appearance and motion
vectors; :class:`CSCMEmbedding` runs the module both ways, as the paper does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from engine.models.layers import (
    CausalConv1d,
    attention_mask,
    banded_self_attention,
    masked_running_mean,
    masked_self_attention,
)


class CSCM(nn.Module):
    """One direction of the CSCM: the auxiliary modality compensates the main one.

    Attributes:
        receptive_field: ``window + kernel_size - 1`` snippets when causal (eq. 3 then eq. 4).
    """

    def __init__(self, dim: int, window: int, kernel_size: int = 3, causal: bool = True) -> None:
        """Build the module.

        Args:
            dim: feature width E of both modalities.
            window: causal window W for eq. 1 and eq. 3.
            kernel_size: taps of the eq. 4 convolution (the paper's 3).
            causal: False keeps the paper's whole-sequence pooling and attention.
        """
        super().__init__()
        self.window = window
        self.causal = causal
        # Eq. 1's "3x3 conv" acts on a single pooled vector in the paper, i.e. it is pointwise.
        self.main_gate = nn.Linear(dim, dim)
        self.query = nn.Linear(dim, dim)  # eq. 2
        self.core = nn.Linear(dim, dim)  # eq. 3, W_f
        self.aux_conv = CausalConv1d(dim, dim, kernel_size, causal=causal)  # eq. 4
        self.receptive_field = window + self.aux_conv.receptive_field - 1

    def forward(self, x_main: Tensor, x_aux: Tensor, valid: Tensor) -> Tensor:
        """Enhance the main modality.

        Args:
            x_main: main-modality features, zero at invalid snippets. # (B, T, E)
            x_aux: auxiliary-modality features, zero at invalid snippets. # (B, T, E)
            valid: snippet validity. # (B, T) bool

        Returns:
            O_main, the gated main features. # (B, T, E)
        """
        pooled = masked_running_mean(x_main, valid, self.window, self.causal)  # (B, T, E)
        f_main = torch.sigmoid(self.main_gate(pooled))  # (B, T, E), eq. 1
        f_q = self.query(x_main)  # (B, T, E), eq. 2
        if self.causal and not torch.onnx.is_in_onnx_export():
            # The same numbers as the masked form at O(T W) (whole training videos); the exported
            # scorer keeps the masked form, whose graph needs no block arithmetic on a short window.
            attended = banded_self_attention(f_q, valid, self.window)  # (B, T, E)
        else:
            attended = masked_self_attention(f_q, attention_mask(valid, self.window, self.causal))
        # Zero at invalid snippets (W_f's bias would otherwise leak into eq. 4's convolution), so
        # a window padded with invalid snippets scores exactly as the unpadded sequence does.
        f_core = self.core(attended) * valid.unsqueeze(-1).to(f_q.dtype)  # eq. 3
        f_aux = self.aux_conv(x_aux + f_core)  # (B, T, E), eq. 4
        gate = torch.sigmoid(f_aux * f_main)  # (B, T, E), eq. 5
        return gate * x_main  # (B, T, E), eq. 6


class CSCMEmbedding(nn.Module):
    """Embeds both modalities and runs the CSCM in both directions.

    Attributes:
        receptive_field: that of one :class:`CSCM` (the embeddings are pointwise).
    """

    def __init__(
        self,
        motion_dim: int,
        geometry_dim: int,
        dim: int,
        window: int,
        kernel_size: int = 3,
        causal: bool = True,
        dropout: float = 0.0,
    ) -> None:
        """Build the embedding.

        Args:
            motion_dim: motion features per snippet Dm.
            geometry_dim: geometry/appearance features per snippet Dg.
            dim: embedded width E.
            window: causal window W (snippets).
            kernel_size: taps of the eq. 4 convolution.
            causal: False for the paper's global forms.
            dropout: dropout after the input embeddings.
        """
        super().__init__()
        self.embed_motion = nn.Linear(motion_dim, dim)
        self.embed_geometry = nn.Linear(geometry_dim, dim)
        self.drop = nn.Dropout(dropout)
        self.motion_cscm = CSCM(dim, window, kernel_size, causal)  # main = motion (paper: flow)
        self.geometry_cscm = CSCM(dim, window, kernel_size, causal)  # main = geometry (paper: RGB)
        self.receptive_field = self.motion_cscm.receptive_field

    def forward(self, motion: Tensor, geometry: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """Embed and cross-compensate.

        Args:
            motion: motion features. # (B, T, Dm)
            geometry: geometry/appearance features. # (B, T, Dg)
            valid: snippet validity. # (B, T) bool

        Returns:
            (O_motion, O_geometry), zero at invalid snippets. # (B, T, E) each
        """
        v = valid.unsqueeze(-1).to(motion.dtype)  # (B, T, 1)
        # Zero invalid snippets after the embedding too, so their bias never leaks into neighbours.
        xm = self.drop(torch.relu(self.embed_motion(motion * v))) * v  # (B, T, E)
        xg = self.drop(torch.relu(self.embed_geometry(geometry * v))) * v  # (B, T, E)
        o_motion = self.motion_cscm(xm, xg, valid)  # (B, T, E)
        o_geometry = self.geometry_cscm(xg, xm, valid)  # (B, T, E)
        return o_motion, o_geometry


class ConcatEmbedding(nn.Module):
    """The GIM-style input: per-modality pointwise embeddings, no cross-modal module.

    Attributes:
        receptive_field: 1 (pointwise).
    """

    receptive_field = 1

    def __init__(self, motion_dim: int, geometry_dim: int, dim: int, dropout: float = 0.0) -> None:
        """Build the embedding (arguments as in :class:`CSCMEmbedding`)."""
        super().__init__()
        self.embed_motion = nn.Linear(motion_dim, dim)
        self.embed_geometry = nn.Linear(geometry_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, motion: Tensor, geometry: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """Embed each modality; arguments and returns as in :meth:`CSCMEmbedding.forward`."""
        v = valid.unsqueeze(-1).to(motion.dtype)  # (B, T, 1)
        xm = self.drop(torch.relu(self.embed_motion(motion * v))) * v  # (B, T, E)
        xg = self.drop(torch.relu(self.embed_geometry(geometry * v))) * v  # (B, T, E)
        return xm, xg
