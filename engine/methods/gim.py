"""The `gim` method: point-supervised spotting with Gaussian-based instance-adaptive intensity modelling.

GIM ("Gaussian-based instance-adaptive intensity modeling for point-supervised facial expression
spotting", ../shared/papers/002_1422555b9bb79c17.txt) trains the two-branch head of the ``"gim"``
network (expression intensity regression + ME/MaE action classification) from one labelled frame
per expression:

- Targets (`GimMethod.targets`): the point labels on the snippet grid, ``points`` (T, 2) one-hot
  per class (ME, MaE), and the current pseudo labels ``labels`` (T, 2), one intensity array per
  class (appendix A.1: the two classes keep separate arrays and their losses are averaged).
- Pseudo labels (sec. 3.4 and the three-stage schedule of sec. 3.6.2), remade by `on_step` at the
  first step of every epoch with the current network (eval mode, no grad):

  1. stage 1 (``stage1_epochs``): hard labels 1 in ``[p - k_s1, p + k_s1]``;
  2. stage 2 (``stage2_epochs``): a Gaussian centred on the labelled snippet in ``[p - k_s2, p + k_s2]``;
  3. stage 3 (the rest): full GIM. Pseudo-apex ``v = argmax a`` over ``|j - p| <= k_c / 4``
     (eq. 1), ``mu = x_v`` (eq. 2), rough duration ``L = |{j : |j - v| <= k_c / 2, a_j > theta}|``
     (eq. 3) with ``theta`` falling linearly 0.8 -> 0.5 over the first 30 epochs, range
     ``K = {j : |j - v| <= delta L / 2}``, ``sigma^2 = sum_K ||x_j - mu||^2 / (delta L)`` (eq. 4) and
     soft labels ``exp(-||x_j - mu||^2 / (2 sigma^2))`` on K (eq. 5), in (0, 1] with 1 at v.

  ``a`` is ``outputs["intensity"]`` and ``x`` ``outputs["intensity_embedding"]``. Where two
  instances of one class label the same snippet, each such snippet keeps one of the two labels at
  random (appendix A.1, "Random").
- Loss (eq. 14): ``L_GIM + L_action + lambda_smooth L_smooth + lambda_norm L_norm + lambda_iac L_IAC``
  with the MSE ``L_GIM`` on the pseudo-expression and pseudo-neutral snippets (eq. 9, the neutral
  ones being the ``min(N_exp, T - N_exp)`` unlabelled snippets of lowest intensity, eq. 6), the
  intensity-gated action cross-entropy (eq. 12-13), the smoothness (eq. 11) and sparsity (eq. 10)
  terms and the intensity-aware contrastive loss (eq. 7-8) on ``outputs["intensity_embedding"]``.
- Scores: class scores are the softmax of the action logits, actionness the intensity;
  `default_proposals` is the paper's multi-threshold + OIC on the intensity + class-wise NMS.

Where this differs from the paper:

- Grid. The paper works on frames at 30 fps (SAMM-LV downsampled to match); we work on snippets
  of ``feats.snippet_s`` seconds (8/30 s or 4/30 s). Every range the paper gives in frames is kept
  in seconds (k frames = k / 30 s) and becomes a half-width of ``round(seconds / snippet_s)``
  snippets, halves rounded up (`half_width`). At 8/30 s the ME stage-1 (+-3 frames) and stage-2
  (+-2 frames) ranges are the labelled snippet alone, so stage 2 equals stage 1 for MEs there.
- Schedule. Stage lengths and the theta decay are absolute epochs with the paper's values (1, 4
  and the rest; theta over epochs 0-30, counted from the start of training), not fractions of the
  run: the method is not told the run length. The paper trains 100 epochs; with the trainer's
  default 30 epochs theta is still falling at the end (set ``theta_epochs=9`` to keep the paper's
  proportion, or train 100 epochs).
- Duration. ``L`` is at least 1 (the pseudo-apex counts even when its intensity is below theta);
  eq. 4 would otherwise divide by zero early in training. ``L`` counts every snippet of the window
  above theta, contiguous or not, as eq. 3 is written.
- Stage 2. The paper only says "a Gaussian centred at the labelled frame"; we use eq. 2-5 with
  ``mu = x_p``, ``K = [p - k_s2, p + k_s2]`` and ``delta L`` replaced by the range length 2 k_s2 + 1.
- Invalid snippets (no face, padding) get no label, are never pseudo-neutral, never enter K or
  the contrastive set, and are left out of every loss; their intensity is 0, so they never count
  in ``L`` and never win the pseudo-apex search unless nothing else is valid (then the labelled
  snippet is kept and, if invalid itself, the instance gets no soft label).
- ``L_norm``: eq. 10 prints the plain L1 norm; we take its mean over the valid snippets, as the
  cited CO2-Net (Hong et al., 2021) does, because the paper's ``lambda_norm = 2.5`` on a sum over a
  few thousand frames would swamp every other term.
- Reductions. ``L_GIM`` (eq. 9), ``L_action`` (eq. 13), ``L_smooth`` (eq. 11), ``L_norm`` and
  ``L_IAC`` (eq. 7, a sum over the contrastive set, kept as written) are computed per video and
  averaged over the videos of the batch that have terms. On our coarser grid the contrastive set
  holds ~snippet_frames times fewer samples than the paper's, so the same ``lambda_iac`` weighs it
  less.
- IAC. ``f`` is the L2-normalised ``intensity_embedding`` (the paper does not say which features
  nor whether they are normalised; unnormalised dot products overflow ``exp``). The temperature
  tau is not given; we use 0.1. A snippet labelled by both classes takes the class of its larger
  label; ``log w`` is clamped at 1e-12 (w = 0 for ME/MaE pairs of equal intensity).
- Pseudo-neutral snippets are chosen in every loss call from the current (detached) intensities;
  the paper does not say how often they are refreshed.
- Action scores ``s`` are the two-way softmax over (ME, MaE).
- Proposal type. The paper types a proposal by thresholding the action score of its pseudo-apex
  at 0.5, i.e. for a two-way softmax the argmax there: ``type_rule="apex"`` (the span's snippet of
  highest intensity). The paper's thresholds and NMS IoU are not given; ``ProposalConfig``'s
  defaults (0.1 .. 0.9, 0.5) are kept.
- Point labels. The paper samples each annotated frame "from a Gaussian centred on the
  ground-truth apex" without a width; ``point_mode="gaussian_apex"`` draws from a normal with
  ``sigma = point_sigma * length`` (frames) around the apex (the middle frame if the apex is
  unknown), redrawn until it falls inside [onset, offset] (clipped after 100 tries). Two labels of
  one class that fall in the same snippet merge into one.
- ``soft_labels=False`` (the "Hard" row of tables 2-3): every stage assigns 1 on its range
  instead of a Gaussian (stage 3: K from the pseudo-apex and duration estimate).
- Loss weights are the paper's CAS(ME)^2 values (0.1, 2.5, 1.4e-4); for SAMM-LV it uses
  (0.1, 0.3, 2e-5). The paper's optimiser settings (Adam, lr 2e-5, weight decay 0.1, 100 epochs)
  belong to ``TrainConfig``, not to this method.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.data.features import VideoFeatures
from engine.data.labels import PointFrame, point_frames, point_free_background, snippet_of_frame
from engine.data.records import VideoRecord
from engine.methods.base import Method, eval_outputs
from engine.methods.config import GimConfig
from engine.proposals import PRESETS, ProposalConfig
from stream.intervals import ExpressionType

log = logging.getLogger(__name__)

# Columns of the per-class target arrays: the network's ACTION_CLASSES order.
CLASSES: tuple[ExpressionType, ...] = (ExpressionType.ME, ExpressionType.MAE)
COLUMN = {kind: i for i, kind in enumerate(CLASSES)}
RELIABLE = 0.5  # pseudo-expression snippets with a label above this are "reliable" (sec. 3.5)
_MAX_DRAWS = 100
_TOL = 1e-9


# --------------------------------------------------------------------------------------------
# Pure helpers (numpy), one instance at a time
# --------------------------------------------------------------------------------------------


def half_width(seconds: float, snippet_s: float) -> int:
    """A half-width in seconds as whole snippets: ``round(seconds / snippet_s)``, halves rounded up."""
    return max(0, math.floor(seconds / snippet_s + 0.5 + _TOL))


def gaussian_apex_frames(
    video: VideoRecord, rng: np.random.Generator, sigma_ratio: float
) -> list[PointFrame]:
    """One frame per expression drawn from a Gaussian around its apex (GIM sec. 4.1), in onset order.

    The centre is the apex (the middle frame ``(onset + offset) // 2`` when unknown), the standard
    deviation ``sigma_ratio * length`` frames; a draw outside [onset, offset] is redrawn, up to
    100 times, then clipped. ``sigma_ratio = 0`` gives the centre without drawing.

    Args:
        video: the video (only the simulated annotator sees its intervals).
        rng: the generator (advances).
        sigma_ratio: standard deviation as a fraction of the expression's length in frames.
    """
    out: list[PointFrame] = []
    for iv in video.expressions:
        centre = iv.apex if iv.apex is not None else (iv.onset + iv.offset) // 2
        frame = centre
        sigma = sigma_ratio * iv.length
        if sigma > 0:
            for _ in range(_MAX_DRAWS):
                frame = math.floor(float(rng.normal(centre, sigma)) + 0.5)
                if iv.onset <= frame <= iv.offset:
                    break
            frame = min(max(frame, iv.onset), iv.offset)
        out.append(PointFrame(frame, iv.type))
    return out


def pseudo_apex(intensity: np.ndarray, valid: np.ndarray, point: int, half: int) -> int:
    """GIM eq. 1: the valid snippet of highest intensity within ``half`` snippets of ``point``.

    Ties go to the snippet nearest the point, then the earlier one. With no valid snippet in the
    range the point itself is returned.

    Args:
        intensity: (T,) intensity scores a.
        valid: (T,) bool snippet validity.
        point: the labelled snippet p.
        half: the search half-width (k_c / 4 in snippets).
    """
    n = len(intensity)
    lo, hi = max(0, point - half), min(n - 1, point + half)
    best: tuple[float, int, int] | None = None
    for j in range(lo, hi + 1):
        if not valid[j]:
            continue
        key = (-float(intensity[j]), abs(j - point), j)
        if best is None or key < best:
            best = key
    return point if best is None else best[2]


def rough_duration(intensity: np.ndarray, valid: np.ndarray, apex: int, half: int, theta: float) -> int:
    """GIM eq. 3: valid snippets within ``half`` of the pseudo-apex whose intensity exceeds theta.

    At least 1: the pseudo-apex always counts (eq. 4 divides by the duration).

    Args:
        intensity: (T,) intensity scores a.
        valid: (T,) bool snippet validity.
        apex: the pseudo-apex v.
        half: the window half-width (k_c / 2 in snippets).
        theta: the threshold.
    """
    lo, hi = max(0, apex - half), min(len(intensity) - 1, apex + half)
    window = intensity[lo : hi + 1]  # (W,)
    return max(1, int(np.count_nonzero((window > theta) & valid[lo : hi + 1])))


def gaussian_labels(
    features: np.ndarray, valid: np.ndarray, centre: int, half: int, denominator: float
) -> tuple[np.ndarray, np.ndarray]:
    """GIM eq. 2, 4, 5: soft labels on the valid snippets within ``half`` of ``centre``.

    ``mu = x_centre``, ``sigma^2 = sum_K ||x_j - mu||^2 / denominator``,
    ``label_j = exp(-||x_j - mu||^2 / (2 sigma^2))``: 1 at the centre, in (0, 1] on K.

    Args:
        features: (T, E) intermediate features x of the intensity branch.
        valid: (T,) bool snippet validity; invalid snippets are left out of K.
        centre: the Gaussian's centre snippet (must be valid).
        half: K's half-width in snippets.
        denominator: delta * L of eq. 4 (> 0).

    Returns:
        (snippet indices of K (n,), their labels (n,)).
    """
    n = len(valid)
    idx = np.arange(max(0, centre - half), min(n - 1, centre + half) + 1)
    idx = idx[valid[idx]]  # (n,)
    diff = features[idx] - features[centre]  # (n, E)
    d2 = np.einsum("ne,ne->n", diff, diff)  # (n,)
    var = float(d2.sum()) / denominator
    if var <= 0.0:  # every feature equals mu: all distances are zero
        return idx, np.ones(len(idx))
    return idx, np.exp(-d2 / (2.0 * var))


def _assign(column: np.ndarray, idx: np.ndarray, values: np.ndarray, rng: np.random.Generator) -> None:
    """Write one instance's labels into a class column; a snippet already labelled keeps one of the
    two labels at random (GIM appendix A.1)."""
    taken = column[idx] > 0  # (n,)
    if taken.any():
        keep_old = np.zeros(len(idx), dtype=bool)
        keep_old[taken] = rng.random(int(taken.sum())) < 0.5
        values = np.where(keep_old, column[idx], values)
    column[idx] = values


def pseudo_neutral(a: Tensor, ok: Tensor, expression: Tensor) -> Tensor:
    """GIM eq. 6: per video the min(N_exp, T - N_exp) unlabelled valid snippets of lowest intensity.

    Args:
        a: (B, T) detached intensity.
        ok: (B, T) bool validity.
        expression: (B, T) bool pseudo-expression snippets.

    Returns:
        (B, T) bool pseudo-neutral snippets.
    """
    candidate = ok & ~expression  # (B, T)
    n_exp = (expression & ok).sum(dim=1)  # (B,)
    k = torch.minimum(n_exp, candidate.sum(dim=1))  # (B,): T counts valid snippets only
    key = torch.where(candidate, a, torch.full_like(a, math.inf))  # (B, T)
    order = torch.argsort(key, dim=1, stable=True)  # (B, T)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(a.shape[1], device=a.device).expand_as(order))
    return candidate & (rank < k.unsqueeze(1))


def hard_negatives(a: Tensor, known: Tensor, count: Tensor) -> Tensor:
    """Per video the `count` known-background snippets of highest intensity (hard negatives).

    Args:
        a: (B, T) detached intensity.
        known: (B, T) bool snippets proven background (`point_free_background`), valid ones.
        count: (B,) how many to take (fewer when fewer are known).

    Returns:
        (B, T) bool.
    """
    key = torch.where(known, a, torch.full_like(a, -math.inf))  # (B, T)
    order = torch.argsort(key, dim=1, descending=True, stable=True)  # (B, T)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(a.shape[1], device=a.device).expand_as(order))
    return known & (rank < count.unsqueeze(1))


# --------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------


class GimMethod(Method):
    """GIM pseudo labels, schedule, losses and scores (see the module docstring)."""

    name = "gim"
    config_type = GimConfig
    snippet_targets = ("points", "labels", "background")
    whole_videos = True
    # Paper: 100 epochs (stages 1 + 4 + 95). Its lr 2e-5 / weight decay 0.1 suit its large
    # pre-extracted features; our small network learns nothing in 300 steps at that rate.
    training_defaults = MappingProxyType({"epochs": 100, "batch_size": 8, "lr": 1e-3})
    config: GimConfig

    def __init__(self, config: GimConfig | Mapping | None, network: nn.Module) -> None:
        super().__init__(config, network)
        self._epoch_done: int | None = None  # the epoch whose labels on_step last made

    # ---- schedule -----------------------------------------------------------------------------

    def stage(self, epoch: int) -> int:
        """The training stage (1, 2 or 3) of a 0-based epoch."""
        c = self.config
        if epoch < c.stage1_epochs:
            return 1
        return 2 if epoch < c.stage1_epochs + c.stage2_epochs else 3

    def theta(self, epoch: int) -> float:
        """The duration threshold at a 0-based epoch: linear from theta_start to theta_end."""
        c = self.config
        frac = 1.0 if c.theta_epochs == 0 else min(1.0, epoch / c.theta_epochs)
        return c.theta_start + (c.theta_end - c.theta_start) * frac

    # ---- targets --------------------------------------------------------------------------------

    def point_frames(self, video: VideoRecord, rng: np.random.Generator) -> list[PointFrame]:
        """The labelled frame of every expression (``point_mode``)."""
        if self.config.point_mode == "gaussian_apex":
            return gaussian_apex_frames(video, rng, self.config.point_sigma)
        return point_frames(video, rng, self.config.point_mode)  # type: ignore[arg-type]

    def targets(
        self, video: VideoRecord, feats: VideoFeatures, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """``points`` (T, 2) one-hot ME / MaE at the labelled snippets and the stage-1 ``labels`` (T, 2).

        Only one frame per expression and its type reach the targets (points past the feature
        grid are dropped with a warning). `rng` draws the frames of ``point_mode`` "gaussian_apex"
        and "random".
        """
        n = len(feats.valid)
        points = np.zeros((n, len(CLASSES)), dtype=np.float32)  # (T, 2)
        for frame, kind in self.point_frames(video, rng):
            j = snippet_of_frame(video, frame, feats.snippet_s)
            if not 0 <= j < n:
                log.warning(
                    "video %s: %s point at frame %d falls in snippet %d, outside the %d snippets; dropped",
                    video.video,
                    kind.value,
                    frame,
                    j,
                    n,
                )
                continue
            points[j, COLUMN[kind]] = 1.0
        background = np.zeros(n, dtype=np.float32)  # (T,)
        if self.config.background_gap_s is not None:
            valid = np.asarray(feats.valid, dtype=bool)
            gap = self.config.background_gap_s
            background = point_free_background(points, valid, feats.snippet_s, gap).astype(np.float32)
        return {
            "points": points,
            "labels": self.hard_labels(points, feats, self.config.ks1_s),
            "background": background,
        }

    def hard_labels(
        self, points: np.ndarray, feats: VideoFeatures, half_s: tuple[float, float]
    ) -> np.ndarray:
        """Labels 1 on the valid snippets within ``half_s`` (ME, MaE seconds) of each point (stage 1).

        Args:
            points: (T, 2) point one-hots.
            feats: the video's features (grid and validity).
            half_s: the half-widths in seconds per class.

        Returns:
            (T, 2) float32.
        """
        n = len(points)
        valid = np.asarray(feats.valid, dtype=bool)  # (T,)
        labels = np.zeros((n, len(CLASSES)), dtype=np.float32)  # (T, 2)
        for c in range(len(CLASSES)):
            half = half_width(half_s[c], feats.snippet_s)
            for p in np.flatnonzero(points[:, c]):
                labels[max(0, p - half) : min(n, p + half + 1), c] = 1.0
        return labels * valid[:, None]

    def soft_targets(
        self,
        epoch: int,
        points: np.ndarray,
        feats: VideoFeatures,
        intensity: np.ndarray,
        features: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """The stage-2 / stage-3 pseudo labels of one video at an epoch.

        Args:
            epoch: the 0-based epoch (its stage must be 2 or 3).
            points: (T, 2) point one-hots.
            feats: the video's features (grid and validity).
            intensity: (T,) the network's intensity a.
            features: (T, E) the network's intensity-branch features x.
            rng: for the random choice between overlapping labels.

        Returns:
            (T, 2) float32 labels, in (0, 1] on each instance's range and 0 elsewhere.
        """
        c_ = self.config
        stage = self.stage(epoch)
        if stage == 1:
            return self.hard_labels(points, feats, c_.ks1_s)
        n = len(points)
        valid = np.asarray(feats.valid, dtype=bool)  # (T,)
        labels = np.zeros((n, len(CLASSES)), dtype=np.float64)  # (T, 2)
        theta = self.theta(epoch)
        for c in range(len(CLASSES)):
            search = half_width(c_.kc_s[c] / 4, feats.snippet_s)
            window = half_width(c_.kc_s[c] / 2, feats.snippet_s)
            ks2 = half_width(c_.ks2_s[c], feats.snippet_s)
            for p in np.flatnonzero(points[:, c]):
                if stage == 2:
                    centre, half, denominator = int(p), ks2, float(2 * ks2 + 1)
                else:
                    centre = pseudo_apex(intensity, valid, int(p), search)  # eq. 1
                    duration = rough_duration(intensity, valid, centre, window, theta)  # eq. 3
                    denominator = c_.delta * duration
                    half = math.floor(denominator / 2 + _TOL)  # K of eq. 4
                    lo = half_width(c_.half_min_s[c], feats.snippet_s)
                    hi = half_width(c_.half_max_s[c], feats.snippet_s)
                    if not lo <= half <= hi:  # the duration prior; K's own length normalises
                        half = min(max(half, lo), hi)
                        denominator = float(2 * half + 1)
                if not valid[centre]:
                    continue
                if c_.soft_labels:
                    idx, values = gaussian_labels(features, valid, centre, half, denominator)
                else:
                    idx = np.arange(max(0, centre - half), min(n - 1, centre + half) + 1)
                    idx = idx[valid[idx]]
                    values = np.ones(len(idx))
                _assign(labels[:, c], idx, values, rng)
        return labels.astype(np.float32)

    def on_step(
        self,
        step: int,
        epoch: int,
        network: nn.Module,
        videos: Sequence[tuple[VideoRecord, VideoFeatures]],
        targets: Sequence[Mapping[str, np.ndarray]],
        rng: np.random.Generator,
    ) -> list[dict[str, np.ndarray]] | None:
        """At the first step of each stage-2 / stage-3 epoch: new pseudo labels from the network.

        Stage 1 keeps the hard labels made by `targets`. The network runs on each whole video in
        eval mode under no_grad, and its mode is restored after.
        """
        if epoch == self._epoch_done:
            return None
        self._epoch_done = epoch
        if self.stage(epoch) == 1:
            return None
        fresh: list[dict[str, np.ndarray]] = []
        for (out, _), (_, feats), tgt in zip(eval_outputs(network, videos), videos, targets, strict=True):
            intensity = out["intensity"][0].double().cpu().numpy()  # (T,)
            features = out["intensity_embedding"][0].double().cpu().numpy()  # (T, E)
            labels = self.soft_targets(epoch, tgt["points"], feats, intensity, features, rng)
            fresh.append({**tgt, "labels": labels})
        return fresh

    # ---- loss -----------------------------------------------------------------------------------

    def loss(
        self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], valid: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """GIM eq. 14: L_GIM + L_action + l1 L_smooth + l2 L_norm + l3 L_IAC (module docstring)."""
        c_ = self.config
        a = outputs["intensity"]  # (B, T)
        probs = torch.softmax(outputs["action"], dim=-1)  # (B, T, 2)
        source = "embedding" if c_.iac_source == "embedding" else "intensity_embedding"
        emb = F.normalize(outputs[source], dim=-1)  # (B, T, E)
        ok = valid.bool()  # (B, T)
        labels = targets["labels"].to(a.dtype) * ok.unsqueeze(-1).to(a.dtype)  # (B, T, 2)
        labelled = labels > 0  # (B, T, 2)
        expression = labelled.any(dim=-1)  # (B, T)
        neutral = pseudo_neutral(a.detach(), ok, expression)  # (B, T) eq. 6
        if c_.background_gap_s is not None and "background" in targets:
            known = (targets["background"] > 0) & ok & ~expression  # (B, T)
            neutral = neutral | hard_negatives(a.detach(), known, (expression & ok).sum(dim=1))

        gim, action, iac = [], [], []
        for b in range(a.shape[0]):
            n_exp, n_neut = int(expression[b].sum()), int(neutral[b].sum())
            if n_exp + n_neut == 0:
                continue
            # eq. 9 (appendix A.1: a snippet of both classes averages its two squared errors).
            sq = (a[b].unsqueeze(-1) - labels[b]) ** 2 * labelled[b]  # (T, 2)
            per_snippet = sq.sum(-1) / labelled[b].sum(-1).clamp_min(1)  # (T,)
            gim.append((per_snippet.sum() + (a[b] ** 2 * neutral[b]).sum()) / (n_exp + n_neut))
            action.append(self.action_loss(a[b], probs[b], labels[b], neutral[b]))
            iac.append(self.iac_loss(emb[b], labels[b], neutral[b]))

        zero = a.sum() * 0.0
        l_gim = torch.stack(gim).mean() if gim else zero
        acts = [x for x in action if x is not None]
        l_action = torch.stack(acts).mean() if acts else zero
        iacs = [x for x in iac if x is not None]
        l_iac = torch.stack(iacs).mean() if iacs else zero
        l_smooth = self._smooth(a, ok)
        l_norm = self._norm(a, ok)
        total = (
            l_gim + l_action + c_.lambda_smooth * l_smooth + c_.lambda_norm * l_norm + c_.lambda_iac * l_iac
        )
        parts = {"gim": l_gim, "action": l_action, "smooth": l_smooth, "norm": l_norm, "iac": l_iac}
        return total, {k: float(v.detach()) for k, v in parts.items()}

    @staticmethod
    def action_loss(a: Tensor, probs: Tensor, labels: Tensor, neutral: Tensor) -> Tensor | None:
        """GIM eq. 12-13 for one video: intensity-gated cross-entropy on reliable snippets.

        Args:
            a: (T,) intensity.
            probs: (T, 2) action softmax.
            labels: (T, 2) pseudo labels (zero at invalid snippets).
            neutral: (T,) bool pseudo-neutral snippets.
        """
        refined = (probs * a.unsqueeze(-1)).clamp(1e-6, 1.0 - 1e-6)  # (T, 2) eq. 12
        y = (labels > RELIABLE).to(a.dtype)  # (T, 2) multi-hot pseudo class
        positive = y.sum(-1) > 0  # (T,) I+
        terms = []
        if positive.any():
            terms.append(-(y * refined.log()).sum(-1)[positive].mean())
        if neutral.any():
            terms.append(-(1.0 - refined).log()[neutral].mean())  # mean over I- and the C classes
        return torch.stack(terms).sum() if terms else None

    def iac_loss(self, f: Tensor, labels: Tensor, neutral: Tensor) -> Tensor | None:
        """GIM eq. 7-8 for one video: intensity-aware supervised contrast over reliable snippets.

        Args:
            f: (T, E) L2-normalised intensity-branch features.
            labels: (T, 2) pseudo labels.
            neutral: (T,) bool pseudo-neutral snippets.
        """
        top, cls = labels.max(dim=-1)  # (T,), (T,)
        reliable = top > RELIABLE  # (T,)
        members = reliable | neutral  # (T,) the set I
        idx = torch.nonzero(members).squeeze(-1)  # (n,)
        if idx.numel() < 2:
            return None
        y = torch.where(reliable[idx], cls[idx] + 1, torch.zeros_like(cls[idx]))  # (n,) 0 neutral
        inten = torch.where(reliable[idx], top[idx], torch.zeros_like(top[idx]))  # (n,) a-hat
        same = y.unsqueeze(0) == y.unsqueeze(1)  # (n, n)
        gap = (inten.unsqueeze(0) - inten.unsqueeze(1)).abs()  # (n, n)
        w = torch.where(same, 1.0 - gap, gap)  # (n, n) eq. 8
        fi = f[idx]  # (n, E)
        logits = w.clamp_min(1e-12).log() + fi @ fi.T / self.config.temperature  # (n, n)
        eye = torch.eye(len(idx), dtype=torch.bool, device=f.device)
        log_den = torch.logsumexp(logits.masked_fill(eye, -math.inf), dim=1)  # (n,) over E(i)
        positives = same & ~eye  # (n, n) Q(i)
        count = positives.sum(dim=1)  # (n,)
        has = count > 0
        if not has.any():
            return None
        log_prob = (logits - log_den.unsqueeze(1)) * positives  # (n, n)
        per_anchor = -log_prob.sum(dim=1)[has] / count[has]  # (m,)
        return per_anchor.sum()

    @staticmethod
    def _smooth(a: Tensor, ok: Tensor) -> Tensor:
        """GIM eq. 11: mean |a_{t+1} - a_t| over consecutive valid pairs, per video, batch-averaged."""
        pair = (ok[:, 1:] & ok[:, :-1]).to(a.dtype)  # (B, T - 1)
        count = pair.sum(dim=1)  # (B,)
        per_video = ((a[:, 1:] - a[:, :-1]).abs() * pair).sum(dim=1) / count.clamp_min(1)  # (B,)
        has = count > 0
        return per_video[has].mean() if has.any() else a.sum() * 0.0

    @staticmethod
    def _norm(a: Tensor, ok: Tensor) -> Tensor:
        """GIM eq. 10 as a mean: the mean intensity over valid snippets, per video, batch-averaged."""
        v = ok.to(a.dtype)  # (B, T)
        count = v.sum(dim=1)  # (B,)
        per_video = (a.abs() * v).sum(dim=1) / count.clamp_min(1)  # (B,)
        has = count > 0
        return per_video[has].mean() if has.any() else a.sum() * 0.0

    # ---- scores ---------------------------------------------------------------------------------

    @classmethod
    def default_proposals(cls) -> ProposalConfig:
        """GIM sec. 3.6.3: multi-threshold spans of the intensity, OIC on it, class-wise NMS."""
        return PRESETS["gim"]

    @classmethod
    def operating_grid(cls) -> Mapping[str, Sequence[Any]]:
        """The shared grid plus the duration check on the apex type (an apex-typed ME longer than
        an ME can last becomes a MaE), off (the paper's rule) or on, whichever the training videos
        prefer."""
        grid = dict(super().operating_grid())
        grid["duration_check"] = (False, True)
        return MappingProxyType(grid)

    def score_tensors(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """ME/MaE action softmax (B, T, 2) and the expression intensity (B, T) as actionness."""
        return torch.softmax(outputs["action"], dim=-1), outputs["intensity"]
