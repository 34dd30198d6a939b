"""Causal temporal building blocks shared by the spotting networks.

Every layer here works on channels-last sequences ``(B, T, C)`` and, in its causal form, lets the
output at snippet ``t`` depend only on snippets ``<= t`` (DESIGN.md invariant 2). Each module states
its ``receptive_field`` in snippets so a network can sum them up and the live scorer knows how much
history it needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def chain_receptive_field(*fields: int) -> int:
    """Receptive field of layers applied one after another.

    Args:
        *fields: receptive fields (in snippets) of the layers, in any order.

    Returns:
        ``1 + sum(f - 1)``: each layer adds its own reach into the past.
    """
    return 1 + sum(f - 1 for f in fields)


class CausalConv1d(nn.Module):
    """1-D temporal convolution with left padding (causal) or centred padding (offline variant).

    Attributes:
        receptive_field: snippets the output at t sees, ``dilation * (kernel_size - 1) + 1``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int = 1,
        causal: bool = True,
    ) -> None:
        """Build the convolution.

        Args:
            in_channels: input channels C_in.
            out_channels: output channels C_out.
            kernel_size: taps in time.
            dilation: spacing of the taps.
            causal: True pads only on the left; False pads both sides (the paper's offline form).
        """
        super().__init__()
        self.receptive_field = dilation * (kernel_size - 1) + 1
        total = self.receptive_field - 1
        # Causal: all padding on the past side, so no future snippet reaches the output.
        self._pad = (total, 0) if causal else (total // 2, total - total // 2)
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the convolution.

        Args:
            x: input sequence. # (B, T, C_in)

        Returns:
            output sequence of the same length. # (B, T, C_out)
        """
        y = F.pad(x.transpose(1, 2), self._pad)  # (B, C_in, T + pad)
        return self.conv(y).transpose(1, 2)  # (B, T, C_out)


class TemporalBlock(nn.Module):
    """CausalConv1d -> ReLU -> dropout, with invalid snippets zeroed like padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int = 1,
        causal: bool = True,
        dropout: float = 0.0,
    ) -> None:
        """Build the block (arguments as in :class:`CausalConv1d`, plus the dropout rate)."""
        super().__init__()
        self.conv = CausalConv1d(in_channels, out_channels, kernel_size, dilation, causal)
        self.drop = nn.Dropout(dropout)
        self.receptive_field = self.conv.receptive_field

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: input sequence. # (B, T, C_in)
            valid: snippet validity. # (B, T) bool

        Returns:
            features, zero at invalid snippets. # (B, T, C_out)
        """
        y = self.drop(torch.relu(self.conv(x)))  # (B, T, C_out)
        # Zeroing keeps an invalid snippet from feeding its (bias-only) activations onward.
        return y * valid.unsqueeze(-1).to(y.dtype)


def masked_running_mean(x: Tensor, valid: Tensor, window: int, causal: bool = True) -> Tensor:
    """Mean of the valid snippets over the last ``window`` snippets (or the whole sequence).

    The causal form replaces CSCM's whole-video average pooling (MC-WES eq. 1). The window sum is
    a convolution with a ones kernel rather than a cumsum difference, so snippets older than the
    window have exactly no influence (no rounding residue).

    Args:
        x: features. # (B, T, C)
        valid: snippet validity; invalid snippets are left out of sum and count. # (B, T) bool
        window: snippets in the causal window, W >= 1.
        causal: False returns the mean over all valid snippets, repeated at every t.

    Returns:
        the mean; zero where the window holds no valid snippet. # (B, T, C)
    """
    v = valid.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
    xv = x * v  # (B, T, C)
    if not causal:
        total = xv.sum(dim=1, keepdim=True)  # (B, 1, C)
        count = v.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
        return (total / count).expand_as(x)  # (B, T, C)
    b, t, c = x.shape
    ones = torch.ones(1, 1, window, dtype=x.dtype, device=x.device)  # (1, 1, W)
    seq = F.pad(torch.cat([xv, v], dim=-1).transpose(1, 2), (window - 1, 0))  # (B, C + 1, T + W - 1)
    sums = F.conv1d(seq.reshape(b * (c + 1), 1, -1), ones)  # (B * (C + 1), 1, T)
    sums = sums.reshape(b, c + 1, t).transpose(1, 2)  # (B, T, C + 1)
    return sums[..., :c] / sums[..., c:].clamp_min(1.0)  # (B, T, C)


def attention_mask(valid: Tensor, window: int, causal: bool = True) -> Tensor:
    """Which keys each query may attend to.

    Args:
        valid: snippet validity; invalid snippets are never keys. # (B, T) bool
        window: causal window W: query t sees keys t - W + 1 .. t.
        causal: False allows every valid key (the paper's global self-attention).

    Returns:
        allowed[b, t, s]. # (B, T, T) bool
    """
    keys = valid.unsqueeze(1)  # (B, 1, T)
    if not causal:
        return keys.expand(-1, valid.shape[1], -1)  # (B, T, T)
    idx = torch.arange(valid.shape[1], device=valid.device)
    lag = idx.unsqueeze(1) - idx.unsqueeze(0)  # (T, T): query minus key
    band = (lag >= 0) & (lag < window)  # (T, T)
    return band.unsqueeze(0) & keys  # (B, T, T)


def masked_self_attention(q: Tensor, allowed: Tensor) -> Tensor:
    """Softmax(q q^T / sqrt(C)) q over the allowed keys (MC-WES eq. 3 inner part).

    Masked keys get exactly zero weight; a query with no allowed key returns zeros (not NaN).

    Args:
        q: queries, which are also keys and values. # (B, T, C)
        allowed: key mask from :func:`attention_mask`. # (B, T, T) bool

    Returns:
        attended features. # (B, T, C)
    """
    # The 1/sqrt(C) scale is ours: the paper omits it, but unscaled dot products saturate the softmax.
    scores = torch.matmul(q, q.transpose(1, 2)) / (q.shape[-1] ** 0.5)  # (B, T, T)
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    # Masked keys already get exp(min - max) == 0; the product zeroes fully-masked rows (uniform softmax).
    weights = torch.softmax(scores, dim=-1) * allowed.to(scores.dtype)  # (B, T, T)
    return torch.matmul(weights, q)  # (B, T, C)


def banded_self_attention(q: Tensor, valid: Tensor, window: int) -> Tensor:
    """Causal windowed self-attention computed block by block, over the keys a block can see.

    The same numbers as ``masked_self_attention(q, attention_mask(valid, window))`` (query t sees
    the valid keys t - W + 1 .. t; a query without one returns zeros) at O(T W) instead of
    O(T^2) cost: the queries are cut into blocks of W, and each block attends, with one batched
    matrix product, to the 2W - 1 snippets that end with it under the causal band. On a
    640-snippet training batch this is about 4 times faster than the full masked form
    (forward and backward, one CPU thread; `benchmarks/attention_speed.py`).

    Args:
        q: queries, which are also keys and values. # (B, T, C)
        valid: snippet validity; invalid snippets are never keys. # (B, T) bool
        window: W >= 1.

    Returns:
        attended features. # (B, T, C)
    """
    b, t, c = q.shape
    block = window
    n = -(-t // block)  # blocks
    tail = n * block - t
    queries = F.pad(q, (0, 0, 0, tail)).reshape(b, n, block, c)  # (B, n, S, C)
    span = block + window - 1  # keys a block can see: W - 1 before it and its own S
    keys = F.pad(q, (0, 0, window - 1, tail)).unfold(1, span, block)  # (B, n, C, span)
    key_ok = F.pad(valid, (window - 1, tail), value=False).unfold(1, span, block)  # (B, n, span)
    lag = torch.arange(block, device=q.device).unsqueeze(1) - torch.arange(span, device=q.device) + window - 1
    band = (lag >= 0) & (lag < window)  # (S, span): query i may see key j
    allowed = band & key_ok.unsqueeze(2)  # (B, n, S, span)
    scores = torch.matmul(queries, keys) / (c**0.5)  # (B, n, S, span)
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1) * allowed.to(scores.dtype)  # (B, n, S, span)
    out = torch.matmul(weights, keys.transpose(-1, -2))  # (B, n, S, C)
    return out.reshape(b, n * block, c)[:, :t]  # (B, T, C)
