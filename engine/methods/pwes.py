"""The `pwes` method: point-level weakly-supervised spotting, one random frame per expression (PWES).

Each expression of a training video is labelled by one frame drawn uniformly inside it
(``point_mode="random"``, the paper's setting; ``"apex"`` for the random-vs-apex ablation,
Table VIII). The point falls in one snippet, so the targets are ``points`` (T, 3): one-hot at the
labelled snippets (columns background, ME, MaE; background always 0), zero elsewhere.

The baseline is MC-WES without its attention-guided feature consistency (L_fc) and duration
consistency (L_dc^3) losses (PWES Table I); `PwesMethod` subclasses `McwesMethod` and keeps its
top-K MIL branches (here L_mil^1 and L_mil^2 = MC-WES L_dc^1, L_dc^2, eq. 12-14), the mutual
learning of the modal attentions (L_aml = MC-WES L_sc), the guide and the sparsity losses. It
adds:

- **MPLG** (sec. 3.3, Algorithm 1, eq. 1-9), run on every training batch after
  ``pretrain_steps`` optimiser steps, from the current forward's detached outputs:
  (1) A' = A * minmax(max_n cos(X_t, X_point_n)), 1 at the labelled snippets;
  (2) M = the top-k of A' (k = floor(0.3 T)), S~' = S~ * M with S~ = sigmoid(T-CAM) of ME/MaE;
  (3) S~'' = S~' * W, W_t,c = softmax over the classes present in the video's points of
      -||X_t - Z_c|| (Z_c the mean feature of the class's points), 0 for absent classes;
  (4) S~''[S~'' < mean_t S~_c] = 0;
  (5) foreground label c at t when c = argmax S~''_t and S~''_t,c > theta (0.8);
  (6) background label at the 2k snippets of lowest attention A;
  (7) the two concatenated (T, 3), then combined with the points (eq. 15).
- **Snippet focal loss** (eq. 15-16) on the snippets carrying a point or pseudo label, with
  S^ = [sigmoid(S_bg), sigmoid(S_ME) * A, sigmoid(S_MaE) * A] (foreground from the
  attention-suppressed T-CAM, background from the T-CAM), gamma 2, divided by N_s.
- **DFCL** (sec. 3.4, eq. 10-11, 17): per video and class, the fused features of the snippets
  labelled with the class are split into K_c region-level spaces (K = 10 background, 2 ME, 3 MaE)
  plus the whole set (q_c,0); their means, L2-normalised, are the video's region-level vectors.
  A memory bank holds the latest vectors of every training video (N videos x (11 + 3 + 4)
  vectors x E). The foreground vectors of the batch are the anchors of an InfoNCE loss
  (tau = 1.0): positives are the bank's vectors of the same class, negatives those of the other
  expression class and the background, from the other videos.
- Joint loss (eq. 18): ``lambda1 L_vcl + lambda2 L_scl + lambda3 L_fcl + lambda4 L_gui +
  lambda5 L_sps + L_aml`` with lambda1 = lambda2 = lambda4 = 1.0, lambda3 = 0.1, lambda5 = 0.8.

Scores (sec. 3.6): class scores from the suppressed T-CAM sigmoid(S_c) * A, actionness A, and
MC-WES's multi-top proposals with OIC and NMS at 0.01.

Where this differs from the paper:

- Pseudo labels are made online, per training batch, from that batch's forward (detached), as
  the pipeline of its Fig. 2 draws them; ``on_step`` only counts the pre-training steps. The
  paper does not say how often MPLG runs. Pre-training steps are optimiser steps (the paper's
  "iterations", 80 of its 1000 for CAS(ME)^2).
- Conflicts the paper leaves open are resolved as: a labelled point is foreground of its
  class(es) only, never background nor another class; a pseudo foreground snippet is never
  background (the top-k of A' and the bottom 2k of A can overlap).
- Algorithm 1 writes ``where(sum Y > 1)`` for the labelled snippets and argmax for the maximum
  of G; read as ``> 0`` and max. Eq. 5 takes the softmax of the distance itself, which would
  favour the farther class; we take the softmax of the negative distance.
- With MPLG off (ablation) the snippet loss and DFCL see the point labels alone.
- Point supervision bounds where each type can be: background starts at the longest expression
  of each point's own type (ME 0.5 s, MaE 4 s) from the points (``background_gap_s``), and MPLG
  may label a class only within that reach of a point of the class (``class_regions``). The
  paper's MPLG labels any snippet; on SynthSpot-v2 93 % of the ME labels it added were wrong
  (docs/results.md).
- The video-level MIL pools, per expression class, the video's points of the class times the
  longest expression of the class (``mil_k="points"``) instead of T / h: MC-WES's h = 9 pools the
  top 11 % of snippets as ME evidence where MEs cover about 2 %, teaching the ME class on MaEs and
  background; the points count the expressions, so the pool can cover them and little else.
- The focal snippet loss averages each class over its own labelled snippets, then the classes
  (``class_balance``), where eq. 16 takes one mean over all of them: the few ME snippets weigh as
  much as the many background and MaE ones (every fold's training identities prefer it).
- DFCL region spaces: the labelled snippets of a class, in time order, split into K_c contiguous
  groups of (nearly) equal size; a class with fewer than K_c labelled snippets leaves the
  remaining vectors empty (never used). Eq. 10 filters with the pseudo labels; we use them
  combined with the points (eq. 15). Anchors are the foreground vectors (background vectors have
  no "same foreground label" positives) and the anchor's own video is left out of the keys.
- The MIL branches keep MC-WES's softmax over the top-K pooled logits; the snippet-level
  probabilities (MPLG, focal loss, guide loss, scores) use the sigmoid the PWES text gives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.data.features import VideoFeatures
from engine.data.labels import (
    BACKGROUND,
    CLASS_OF,
    MAE,
    ME,
    class_regions,
    point_free_background,
    point_labels,
)
from engine.data.records import VideoRecord
from engine.methods.base import MethodConfig, eval_outputs
from engine.methods.config import PwesConfig
from engine.methods.mcwes import McwesMethod
from stream.intervals import MAE_MAX_SECONDS, ME_MAX_SECONDS

_EPS = 1e-6


# --------------------------------------------------------------------------------------------
# MPLG (Algorithm 1)
# --------------------------------------------------------------------------------------------


def mplg(
    embedding: Tensor,
    fg_probs: Tensor,
    attention: Tensor,
    points: Tensor,
    valid: Tensor,
    select_ratio: float,
    threshold: float,
    background: Tensor | None = None,
    possible: Tensor | None = None,
) -> Tensor:
    """Multi-refined pseudo labels of one video (Algorithm 1, steps 1-7; the module docstring).

    Everything is computed over the valid snippets only (T = their count); invalid snippets get
    no label. Call it on detached tensors.

    Args:
        embedding: fused features X. # (T, E)
        fg_probs: sigmoid T-CAM probabilities of (ME, MaE), S~. # (T, 2)
        attention: attention A. # (T,)
        points: point labels of (ME, MaE), 1 at labelled snippets. # (T, 2)
        valid: snippet validity. # (T,) bool
        select_ratio: k as a fraction of T.
        threshold: theta.
        background: known background (`point_free_background`), or None. # (T,) bool
            When given, it replaces step 6's lowest-attention background and no known
            background snippet can become pseudo foreground.
        possible: where each class may be pseudo foreground (`class_regions`), or None:
            anywhere. # (T, 2) bool

    Returns:
        Labels (background, ME, MaE), float 0/1: the points are foreground of their classes,
        pseudo foreground snippets are never background. # (T, 3)
    """
    t = embedding.shape[0]
    out = embedding.new_zeros(t, 3)  # (T, 3)
    idx = valid.nonzero().squeeze(1)  # (n,)
    n = idx.numel()
    if n == 0:
        return out
    x, s, a = embedding[idx], fg_probs[idx], attention[idx]  # (n, E), (n, 2), (n,)
    y = points[idx] > 0  # (n, 2)
    known_bg = None if background is None else background[idx].bool()  # (n,)
    labelled = y.any(dim=1)  # (n,)
    k = max(1, math.floor(select_ratio * n + _EPS))

    # Step 1 (eq. 1-2): foreground-level similarity to the labelled snippets modulates A.
    if labelled.any():
        xn = F.normalize(x, dim=-1)  # (n, E)
        g = (xn @ xn[labelled].T).amax(dim=1)  # (n,), G^max
        spread = g.max() - g.min()
        g = (g - g.min()) / spread if spread > _EPS else torch.ones_like(g)
        g = torch.where(labelled, torch.ones_like(g), g)  # labelled snippets are always 1
    else:
        g = torch.ones_like(a)
    refined = a * g  # (n,) A'
    # Step 2 (eq. 3): the top-k refined attention snippets are the coarse foreground.
    top = torch.sort(refined, descending=True, stable=True).indices[:k]  # (k,)
    coarse = torch.zeros_like(a)
    coarse[top] = 1.0
    if known_bg is not None:
        coarse = torch.where(known_bg, torch.zeros_like(coarse), coarse)
    s1 = s * coarse.unsqueeze(1)  # (n, 2) S~'
    # Step 3 (eq. 4-6): class-level similarity to the mean feature of each class's points.
    present = y.any(dim=0)  # (2,)
    w = torch.zeros_like(s)  # (n, 2); an absent class gets 0
    if present.any():
        cols = present.nonzero().squeeze(1).tolist()
        z = torch.stack([x[y[:, c]].mean(dim=0) for c in cols])  # (P, E) Z_c
        dist = (x.unsqueeze(1) - z.unsqueeze(0)).norm(dim=-1)  # (n, P)
        w[:, cols] = torch.softmax(-dist, dim=1)
    s2 = s1 * w  # (n, 2) S~''
    # Step 4 (eq. 7): drop what is below the class's mean original probability.
    s2 = torch.where(s2 < s.mean(dim=0, keepdim=True), torch.zeros_like(s2), s2)
    if possible is not None:  # a class no point of it can reach is not a candidate
        s2 = torch.where(possible[idx].bool(), s2, torch.zeros_like(s2))
    # Step 5 (eq. 8): the best class if it passes theta.
    best_val, best = s2.max(dim=1)  # (n,), (n,)
    fg = torch.zeros_like(s)  # (n, 2)
    hit = best_val > threshold
    fg[hit, best[hit]] = 1.0
    # Step 6 (eq. 9): the 2k lowest attention snippets are background (or the known background).
    if known_bg is None:
        bottom = torch.sort(a, descending=False, stable=True).indices[: min(2 * k, n)]
        bg = torch.zeros_like(a)
        bg[bottom] = 1.0
    else:
        bg = known_bg.to(a.dtype)
    # Points win over pseudo labels, foreground over background (see the module docstring).
    fg = torch.where(labelled.unsqueeze(1), y.to(fg.dtype), fg)
    bg = torch.where(fg.any(dim=1), torch.zeros_like(bg), bg)
    # Step 7: concatenate (background first, the T-CAM column order).
    out[idx] = torch.cat([bg.unsqueeze(1), fg], dim=1)
    return out


def point_top_k(points: np.ndarray, snippet_s: float) -> np.ndarray:
    """The MIL's k per class from a video's points: points x the class's longest expression.

    Every expression carries one point, so n points of a class span at most n times its longest
    expression (ME 0.5 s, MaE 4 s; `round(seconds / snippet_s)`, at least one snippet).

    Args:
        points: 1 at the labelled snippets of (ME, MaE). # (T, 2)
        snippet_s: seconds per snippet.

    Returns:
        k of (ME, MaE); 0 for a class without points. # (2,) int64
    """
    counts = (np.asarray(points) > 0).sum(axis=0)  # (2,)
    per_point = [max(1, round(s / snippet_s)) for s in (ME_MAX_SECONDS, MAE_MAX_SECONDS)]
    return (counts * np.asarray(per_point)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def snippet_focal_loss(
    probs: Tensor, labels: Tensor, valid: Tensor, *, class_balance: bool = False
) -> Tensor:
    """Eq. 16: binary focal loss (gamma 2) summed over the classes, mean over labelled snippets.

    Args:
        probs: S^ per class in (0, 1). # (B, T, 3)
        labels: combined labels Y~ (0/1). # (B, T, 3)
        valid: (B, T) bool; invalid snippets never count.
        class_balance: average each class's labelled snippets on their own, then the classes
            present (background, ME and MaE count equally; a snippet with two labels counts in
            both), instead of all labelled snippets together.

    Returns:
        The loss (0 when no valid snippet carries a label).
    """
    p = probs.clamp(_EPS, 1.0 - _EPS)  # (B, T, 3)
    pos = labels * (1.0 - p) ** 2 * torch.log(p)
    neg = (1.0 - labels) * p**2 * torch.log(1.0 - p)
    per_snippet = -(pos + neg).sum(dim=-1)  # (B, T)
    if class_balance:
        member = labels * valid.unsqueeze(-1).to(p.dtype)  # (B, T, 3)
        count = member.sum(dim=(0, 1))  # (3,)
        per_class = (per_snippet.unsqueeze(-1) * member).sum(dim=(0, 1)) / count.clamp_min(1.0)
        present = (count > 0).to(p.dtype)
        return (per_class * present).sum() / present.sum().clamp_min(1.0)
    chosen = (valid & (labels.sum(dim=-1) > 0)).to(p.dtype)  # (B, T)
    return (per_snippet * chosen).sum() / chosen.sum().clamp_min(1.0)


def region_vectors(
    embedding: Tensor, labels: Tensor, valid: Tensor, regions: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """DFS (eq. 10-11): region-level vectors of one video, per class [q_c,0, q_c,1 .. q_c,K_c].

    Args:
        embedding: fused features. # (T, E)
        labels: the video's labels (background, ME, MaE). # (T, 3)
        valid: (T,) bool.
        regions: K_c per class column.

    Returns:
        (vectors (R, E), L2-normalised, with gradient; present (R,) bool), R = sum(1 + K_c).
    """
    vectors: list[Tensor] = []
    present: list[bool] = []
    zero = embedding.new_zeros(embedding.shape[1])  # (E,)
    for c, kc in enumerate(regions):
        idx = ((labels[:, c] > 0) & valid).nonzero().squeeze(1)  # labelled snippets, time order
        if idx.numel() == 0:
            vectors.extend([zero] * (1 + kc))
            present.extend([False] * (1 + kc))
            continue
        vectors.append(embedding[idx].mean(dim=0))  # q_c,0: the whole set
        present.append(True)
        for group in torch.tensor_split(idx, kc):
            vectors.append(embedding[group].mean(dim=0) if group.numel() else zero)
            present.append(group.numel() > 0)
    stacked = F.normalize(torch.stack(vectors), dim=-1)  # (R, E)
    return stacked, torch.tensor(present, dtype=torch.bool, device=embedding.device)


def region_classes(regions: Sequence[int]) -> Tensor:
    """The class column of each region-level vector slot. # (R,) int64"""
    return torch.tensor([c for c, kc in enumerate(regions) for _ in range(1 + kc)], dtype=torch.long)


def info_nce(
    anchors: Tensor,
    anchor_class: Tensor,
    anchor_video: Tensor,
    keys: Tensor,
    key_class: Tensor,
    key_video: Tensor,
    temperature: float,
) -> Tensor:
    """Eq. 17: ``-mean_h log(sum_pos exp(u_h . q / tau) / sum_(pos + neg) exp(u_h . q / tau))``.

    Keys of the anchor's own video are left out; anchors without a positive key are skipped.

    Args:
        anchors: L2-normalised anchor vectors u_h. # (A, E)
        anchor_class, anchor_video: their class and video. # (A,), (A,)
        keys: L2-normalised memory-bank vectors. # (K, E)
        key_class, key_video: their class and video. # (K,), (K,)
        temperature: tau.

    Returns:
        The loss (0 when no anchor has a positive).
    """
    allowed = key_video.unsqueeze(0) != anchor_video.unsqueeze(1)  # (A, K)
    positive = allowed & (key_class.unsqueeze(0) == anchor_class.unsqueeze(1))  # (A, K)
    keep = positive.any(dim=1)  # (A,)
    if not keep.any():
        return anchors.new_zeros(()) * anchors.sum()
    logits = anchors[keep] @ keys.T / temperature  # (A', K)
    neg_inf = torch.finfo(logits.dtype).min
    num = torch.logsumexp(logits.masked_fill(~positive[keep], neg_inf), dim=1)  # (A',)
    den = torch.logsumexp(logits.masked_fill(~allowed[keep], neg_inf), dim=1)  # (A',)
    return (den - num).mean()


# --------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------


class PwesMethod(McwesMethod):
    """PWES: MC-WES baseline + MPLG pseudo labels + focal snippet loss + DFCL (module docstring).

    Attributes:
        step: optimiser steps done so far (set by `on_step`); MPLG and DFCL start at
            ``config.pretrain_steps``.
        bank: the DFCL memory bank (N videos, R region slots, E), L2-normalised vectors; None
            until `prepare` or the first DFCL step.
        bank_present: which slots hold a vector. # (N, R) bool
    """

    name = "pwes"
    config_type: ClassVar[type[MethodConfig]] = PwesConfig
    snippet_targets: ClassVar[tuple[str, ...]] = ("points", "background", "pseudo", "possible")
    whole_videos = True
    # Paper: batch 8, lr 5e-4, 1000 iterations; here 100 epochs (~300 iterations on 22 training
    # videos), enough for its 80 pre-training iterations and 220 with MPLG and DFCL.
    training_defaults = MappingProxyType({"epochs": 100, "batch_size": 8, "lr": 5e-4})
    config: PwesConfig

    def __init__(self, config: PwesConfig | Mapping | None, network: nn.Module) -> None:
        super().__init__(config, network)
        self.step = 0
        self._pseudo_epoch = -1  # the epoch whose MPLG labels the targets hold
        self.video_ids: dict[str, int] = {}
        self.bank: Tensor | None = None  # (N, R, E)
        self.bank_present: Tensor | None = None  # (N, R)
        self.slot_class = region_classes(self.config.regions)  # (R,)

    # -- targets and schedule -----------------------------------------------------------

    def targets(
        self, video: VideoRecord, feats: VideoFeatures, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """``points`` (T, 3) float32 one-hot at the labelled snippets, ``background`` (T,) float32
        the point-free background (zeros when ``background_gap_s`` is None), ``possible`` (T, 2)
        float32 where each class (ME, MaE) lies within its longest expression of one of its points
        (`class_regions`; used when ``class_regions`` is on), ``pseudo`` (T, 3) the
        labels the snippet loss starts from (points and point-free background; MPLG replaces
        them), ``video_labels`` (2,) aggregated from the points (PWES sec. 3.1), ``eta`` () and
        ``video_index`` () int64 (the video's memory-bank row), ``point_k`` (2,) int64 the MIL's
        k of (ME, MaE) from the points (``mil_k="points"``; 0 for a class without points)."""
        t = len(feats.valid)
        points = np.zeros((t, 3), dtype=np.float32)  # (T, 3)
        for p in point_labels(video, feats.snippet_s, rng, self.config.point_mode, n_snippets=t):
            points[p.snippet, CLASS_OF[p.type]] = 1.0
        gap = self.config.background_gap_s
        valid = np.asarray(feats.valid, dtype=bool)
        background = np.zeros(t, dtype=np.float32)  # (T,)
        if gap is not None:
            background = point_free_background(points[:, ME : MAE + 1], valid, feats.snippet_s, gap)
            background = background.astype(np.float32)
        possible = class_regions(points[:, ME : MAE + 1], valid, feats.snippet_s).astype(np.float32)
        pseudo = points.copy()  # (T, 3)
        pseudo[:, BACKGROUND] = background
        index = self.video_ids.setdefault(video.video, len(self.video_ids))
        return {
            "points": points,
            "background": background,
            "pseudo": pseudo,
            "possible": possible,
            "video_labels": points[:, [ME, MAE]].max(axis=0, initial=0.0).astype(np.float32),
            "eta": self._eta(feats.snippet_s),
            "video_index": np.asarray(index, dtype=np.int64),
            "point_k": point_top_k(points[:, ME : MAE + 1], feats.snippet_s),
        }

    def top_k(self, valid: Tensor, targets: Mapping[str, Tensor]) -> Tensor:
        """k of the video-level MIL: MC-WES's T / h, or with ``mil_k="points"`` each class's
        `point_top_k` where the video has points of it, at most its valid snippets. # (B, 3)"""
        k = super().top_k(valid, targets)  # (B, 3)
        if self.config.mil_k != "points":
            return k
        n_valid = valid.sum(dim=1, keepdim=True)  # (B, 1)
        from_points = torch.minimum(targets["point_k"].to(k), n_valid).clamp_min(1)  # (B, 2)
        fg = k[:, ME : MAE + 1]
        k[:, ME : MAE + 1] = torch.where(targets["point_k"].to(k) > 0, from_points, fg)
        return k

    def prepare(self, targets: Sequence[Mapping[str, np.ndarray]]) -> None:
        """Allocate the memory bank for every training video (its size depends on the network)."""
        n = max((int(t["video_index"]) for t in targets), default=-1) + 1
        width = getattr(getattr(self.network, "config", None), "embed_dim", None)  # E of the embedding
        self._ensure_bank(n, width)

    def on_step(
        self,
        step: int,
        epoch: int,
        network: nn.Module,
        videos: Sequence[tuple[VideoRecord, VideoFeatures]],
        targets: Sequence[Mapping[str, np.ndarray]],
        rng: np.random.Generator,
    ) -> list[dict[str, np.ndarray]] | None:
        """Count the steps; with ``pseudo_source="eval"``, remake the MPLG labels of every
        training video at the first step of each epoch once pre-training is over."""
        self.step = step
        c = self.config
        if c.pseudo_source != "eval" or not (c.use_mplg and self.refining) or epoch == self._pseudo_epoch:
            return None
        self._pseudo_epoch = epoch
        return self.refresh_pseudo_labels(network, videos, targets)

    def refresh_pseudo_labels(
        self,
        network: nn.Module,
        videos: Sequence[tuple[VideoRecord, VideoFeatures]],
        targets: Sequence[Mapping[str, np.ndarray]],
    ) -> list[dict[str, np.ndarray]]:
        """MPLG labels of every video from an eval-mode, no-grad forward of `network`.

        The network's mode is restored after, so the labels depend on the weights alone (no
        dropout draw): the same weights give the same labels.

        Returns:
            The targets with ``pseudo`` replaced (the other entries shared, not copied).
        """
        c = self.config
        fresh: list[dict[str, np.ndarray]] = []
        for (out, valid), tgt in zip(eval_outputs(network, videos), targets, strict=True):
            device = valid.device
            points = torch.as_tensor(tgt["points"], device=device)[:, ME : MAE + 1]  # (T, 2)
            known = torch.as_tensor(tgt["background"], device=device) > 0  # (T,)
            possible = torch.as_tensor(tgt["possible"], device=device) > 0  # (T, 2)
            labels = mplg(
                out["embedding"][0],
                torch.sigmoid(out["tcam"][0, :, ME : MAE + 1]),
                out["attention"][0],
                points * valid.unsqueeze(-1),
                valid,
                c.select_ratio,
                c.fg_threshold,
                known if c.background_gap_s is not None else None,
                possible if c.class_regions else None,
            )
            fresh.append({**tgt, "pseudo": labels.cpu().numpy().astype(np.float32)})
        return fresh

    @property
    def refining(self) -> bool:
        """Whether the pre-training steps are over (MPLG and DFCL run when switched on)."""
        return self.step >= self.config.pretrain_steps

    def _ensure_bank(self, n: int, dim: int | None) -> None:
        if dim is None or n <= 0:
            return
        slots = len(self.slot_class)
        if self.bank is None or self.bank.shape[2] != dim:
            self.bank = torch.zeros(n, slots, dim)
            self.bank_present = torch.zeros(n, slots, dtype=torch.bool)
        elif self.bank.shape[0] < n:
            grow = n - self.bank.shape[0]
            self.bank = torch.cat([self.bank, torch.zeros(grow, slots, dim)])
            assert self.bank_present is not None
            self.bank_present = torch.cat([self.bank_present, torch.zeros(grow, slots, dtype=torch.bool)])

    # -- probabilities -------------------------------------------------------------------

    def background_probability(self, tcam: Tensor) -> Tensor:
        """The sigmoid background probability of the T-CAM (PWES sec. 3.2). # (B, T)"""
        return torch.sigmoid(tcam[..., BACKGROUND])

    def snippet_probabilities(self, outputs: Mapping[str, Tensor]) -> Tensor:
        """S^ of eq. 16: [sigmoid(S_bg), sigmoid(S_ME) * A, sigmoid(S_MaE) * A]. # (B, T, 3)"""
        p = torch.sigmoid(outputs["tcam"])  # (B, T, 3)
        fg = p[..., ME : MAE + 1] * outputs["attention"].unsqueeze(-1)  # (B, T, 2)
        return torch.cat([p[..., BACKGROUND : BACKGROUND + 1], fg], dim=-1)

    # -- the loss ------------------------------------------------------------------------

    def pseudo_labels(
        self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], valid: Tensor
    ) -> Tensor:
        """The combined labels Y~ of eq. 15 for a batch. # (B, T, 3)

        Before refining, or with MPLG off: the points and the point-free background. Refining
        with ``pseudo_source="eval"``: the labels `refresh_pseudo_labels` stored in the targets;
        with ``"batch"``: MPLG on this batch's (detached) training forward.
        """
        c = self.config
        v = valid.unsqueeze(-1).to(outputs["tcam"].dtype)  # (B, T, 1)
        if not (c.use_mplg and self.refining) or c.pseudo_source == "eval":
            return (targets["pseudo"] > 0).to(v.dtype) * v
        points = (targets["points"] > 0).to(v.dtype) * v  # (B, T, 3)
        known = targets["background"] > 0  # (B, T)
        possible = targets["possible"] > 0  # (B, T, 2)
        with torch.no_grad():
            emb = outputs["embedding"].detach()  # (B, T, E)
            probs = torch.sigmoid(outputs["tcam"].detach()[..., ME : MAE + 1])  # (B, T, 2)
            att = outputs["attention"].detach()  # (B, T)
            pts = points[..., ME : MAE + 1]  # (B, T, 2)
            rows = [
                mplg(
                    emb[b],
                    probs[b],
                    att[b],
                    pts[b],
                    valid[b],
                    c.select_ratio,
                    c.fg_threshold,
                    known[b] if c.background_gap_s is not None else None,
                    possible[b] if c.class_regions else None,
                )
                for b in range(emb.shape[0])
            ]
        return torch.stack(rows)

    def contrast(self, embedding: Tensor, labels: Tensor, valid: Tensor, video_index: Tensor) -> Tensor:
        """DFCL (eq. 17) against the memory bank, then the bank takes the batch's vectors."""
        c = self.config
        index = video_index.reshape(-1).long()  # (B,)
        self._ensure_bank(int(index.max()) + 1, embedding.shape[-1])
        assert self.bank is not None and self.bank_present is not None
        per_video = [region_vectors(embedding[b], labels[b], valid[b], c.regions) for b in range(len(index))]
        vectors = torch.stack([v for v, _ in per_video])  # (B, R, E)
        ok = torch.stack([p for _, p in per_video])  # (B, R)
        slot_class = self.slot_class.to(embedding.device)  # (R,)
        is_anchor = ok & (slot_class != BACKGROUND).unsqueeze(0)  # (B, R)
        bank = self.bank.to(embedding.device)
        bank_ok = self.bank_present.to(embedding.device)  # (N, R)
        n, r = bank_ok.shape
        key_video = torch.arange(n, device=embedding.device).repeat_interleave(r)  # (N R,)
        key_class = slot_class.repeat(n)  # (N R,)
        keep = bank_ok.reshape(-1)  # (N R,)
        anchor_video = index.unsqueeze(1).expand(-1, r)[is_anchor]  # (A,)
        anchor_class = slot_class.unsqueeze(0).expand(len(index), -1)[is_anchor]  # (A,)
        loss = info_nce(
            vectors[is_anchor],
            anchor_class,
            anchor_video,
            bank.reshape(n * r, -1)[keep],
            key_class[keep],
            key_video[keep],
            c.temperature,
        )
        # The bank keeps each video's latest vectors (detached).
        self.bank[index.cpu()] = vectors.detach().to(self.bank.device)
        self.bank_present[index.cpu()] = ok.to(self.bank_present.device)
        return loss

    def loss(
        self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], valid: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """Eq. 18: the MC-WES baseline terms, the focal snippet loss and DFCL."""
        c = self.config
        valid = valid.bool()
        terms = self.loss_terms(outputs, targets, valid)
        labels = self.pseudo_labels(outputs, targets, valid)  # (B, T, 3)
        terms["scl"] = (
            c.lambda_snippet,
            snippet_focal_loss(
                self.snippet_probabilities(outputs), labels, valid, class_balance=c.class_balance
            ),
        )
        if c.use_dfcl and self.refining:
            fcl = self.contrast(outputs["embedding"], labels, valid, targets["video_index"])
        else:
            fcl = outputs["embedding"].new_zeros(())
        terms["fcl"] = (c.lambda_contrast, fcl)
        # Reported only (weight 0): the share of valid snippets labelled foreground / background.
        n_valid = valid.sum().clamp_min(1).to(labels.dtype)
        terms["label_fg"] = (0.0, (labels[..., ME : MAE + 1].sum(-1) > 0).sum() / n_valid)
        terms["label_bg"] = (0.0, labels[..., BACKGROUND].sum() / n_valid)
        return self.combine(terms)

    # -- scores --------------------------------------------------------------------------

    def score_tensors(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Class scores sigmoid(S_c) * A (the suppressed T-CAM, sec. 3.6) and actionness A."""
        att = outputs["attention"]  # (B, T)
        cls = torch.sigmoid(outputs["tcam"][..., ME : MAE + 1]) * att.unsqueeze(-1)  # (B, T, 2)
        return cls, att
