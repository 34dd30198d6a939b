"""Training and the leave-one-out driver (leave-one-identity-out by default).

`train` fits one network with one method on random windows of the training videos (seeded,
reproducible, deterministic algorithms). `predict` scores a whole video in one forward, which
equals streaming it because the network is causal. `loso` walks `Dataset.folds`: by default one
fold per identity (the real person: every synthetic subject morphed from that person is held
out together; where each subject is its own person this is leave-one-subject-out), or per subject
with ``group="subject"``. Per fold it trains on the training subjects only, chooses the proposal
operating point on the *training* videos' predictions (`choose_operating_point`), never on the
held-out identity (as `engine.baseline` does), spots the held-out videos and pools the counts
(`engine.evaluate.evaluate_folds`).

Runs are saved as a plain state dict (``weights.pt``, read back with
``torch.load(weights_only=True)``) and ``run.json`` (configurations and metrics): no pickled
objects (DESIGN invariant 7).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from engine.bundle import lookahead_seconds
from engine.data.features import VideoFeatures
from engine.data.records import Dataset, Fold, VideoRecord
from engine.evaluate import Metrics, Report, evaluate, evaluate_folds, match
from engine.latency import (
    LATENCY_BUDGET_S,
    MAX_LATENCY_CANDIDATES,
    EventLatency,
    check_latency_budget,
    event_latency,
)
from engine.methods import METHODS, Method, build_method
from engine.models import NetworkConfig, NetworkEnsemble, SpottingNetwork, build_network, ensemble_scores
from engine.models.spotter import set_input_statistics
from engine.proposals import (
    OPERATING_GRID,
    POST_NMS_FIELDS,
    Candidates,
    ProposalConfig,
    candidate_key,
    proposal_key,
    propose,
    propose_candidates,
    shift_offsets,
)
from engine.train_config import TrainConfig
from stream.config import check_number
from stream.errors import ConfigError
from stream.intervals import ExpressionType, Interval

log = logging.getLogger(__name__)

# (class_scores (T, 2) ME/MaE, actionness (T,)) of one video; NaN at invalid snippets.
Scores = tuple[np.ndarray, np.ndarray]
Video = tuple[VideoRecord, VideoFeatures]


@contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic torch algorithms for the block, restoring the caller's setting after."""
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
    except RuntimeError as exc:  # pragma: no cover - platform specific
        log.warning("deterministic algorithms unavailable: %s", exc)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def network_inputs(feats: VideoFeatures, network: NetworkConfig) -> VideoFeatures:
    """The features as the network sees them: with the neutral baseline applied when configured.

    The same function serves training and `predict`; the live scorer applies the same
    `calibration.neutral` normalisation snippet by snippet.
    """
    if network.neutral_s is None:
        return feats
    from calibration.neutral import normalise_video

    m, g, ok, _ = normalise_video(
        feats.motion, feats.geometry, feats.valid, feats.snippet_s, network.neutral_s
    )
    return dataclasses.replace(feats, motion=m, geometry=g, valid=ok)


def _crop(array: np.ndarray, start: int, length: int) -> np.ndarray:
    """array[start:start + length] along axis 0, zero-padded at the end to `length`."""
    part = array[start : start + length]
    if part.shape[0] == length:
        return part
    pad = np.zeros((length - part.shape[0], *array.shape[1:]), dtype=array.dtype)
    return np.concatenate([part, pad])


def _whole_batch(
    videos: Sequence[Video],
    targets: Sequence[Mapping[str, np.ndarray]],
    method: Method,
    picks: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Whole videos `picks`, zero-padded to the longest of them (padding is invalid)."""
    length = max(len(videos[i][1].valid) for i in picks)
    motion, geometry, valid = [], [], []
    tgt: dict[str, list[np.ndarray]] = {k: [] for k in targets[0]}
    for i in picks:
        feats = videos[i][1]
        motion.append(_crop(feats.motion, 0, length))  # (L, Dm)
        geometry.append(_crop(feats.geometry, 0, length))  # (L, Dg)
        valid.append(_crop(feats.valid.astype(bool), 0, length))  # (L,)
        for k, v in targets[i].items():
            tgt[k].append(_crop(v, 0, length) if k in method.snippet_targets else v)
    return (
        torch.from_numpy(np.stack(motion).astype(np.float32)),  # (B, L, Dm)
        torch.from_numpy(np.stack(geometry).astype(np.float32)),  # (B, L, Dg)
        torch.from_numpy(np.stack(valid)),  # (B, L) bool
        {k: torch.from_numpy(np.stack(v)) for k, v in tgt.items()},  # (B, L, ...) / (B, ...)
    )


def _batch(
    videos: Sequence[Video],
    targets: Sequence[Mapping[str, np.ndarray]],
    method: Method,
    window: int,
    batch_size: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Random windows: a video with probability ~ its length, a uniform start inside it."""
    lengths = np.array([len(f.valid) for _, f in videos], dtype=np.float64)
    picks = rng.choice(len(videos), size=batch_size, p=lengths / lengths.sum())
    motion, geometry, valid = [], [], []
    tgt: dict[str, list[np.ndarray]] = {k: [] for k in targets[0]}
    for i in picks:
        feats = videos[i][1]
        t = len(feats.valid)
        start = int(rng.integers(0, max(0, t - window) + 1))
        motion.append(_crop(feats.motion, start, window))  # (W, Dm)
        geometry.append(_crop(feats.geometry, start, window))  # (W, Dg)
        valid.append(_crop(feats.valid.astype(bool), start, window))  # (W,) padding is invalid
        for k, v in targets[i].items():
            tgt[k].append(_crop(v, start, window) if k in method.snippet_targets else v)
    return (
        torch.from_numpy(np.stack(motion).astype(np.float32)),  # (B, W, Dm)
        torch.from_numpy(np.stack(geometry).astype(np.float32)),  # (B, W, Dg)
        torch.from_numpy(np.stack(valid)),  # (B, W) bool
        {k: torch.from_numpy(np.stack(v)) for k, v in tgt.items()},  # (B, W, ...) / (B, ...)
    )


def augment_batch(
    motion: torch.Tensor,
    geometry: torch.Tensor,
    motion_std: torch.Tensor,
    geometry_std: torch.Tensor,
    strength: float,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature-space augmentation of a training batch, to generalise to people never seen.

    Per sample: the motion features scaled by ``exp(N(0, 0.3 s))`` (a smaller or larger face, a
    fainter or stronger expression), the geometry features shifted by a constant
    ``N(0, 0.5 s) * std`` per feature (another face shape) and every feature given
    ``N(0, 0.1 s) * std`` noise per snippet, with s = `strength`. Padding stays as it is only up to
    noise; the network zeroes invalid snippets itself.

    Args:
        motion: (B, T, Dm); geometry: (B, T, Dg).
        motion_std, geometry_std: (Dm,), (Dg,) per-feature training standard deviations.
        strength: s in (0, 2] (at 2: a gain of exp(N(0, 0.6)), shapes of one standard deviation).
        rng: the trainer's generator.
    """
    b, t, dm = motion.shape
    dg = geometry.shape[2]

    def normal(*shape: int, sd: float) -> torch.Tensor:
        return torch.from_numpy(rng.normal(0.0, sd, shape).astype(np.float32))

    gain = torch.exp(normal(b, 1, 1, sd=0.3 * strength))  # (B, 1, 1)
    motion = motion * gain + normal(b, t, dm, sd=0.1 * strength) * motion_std
    shape = normal(b, 1, dg, sd=0.5 * strength) * geometry_std  # (B, 1, Dg)
    geometry = geometry + shape + normal(b, t, dg, sd=0.1 * strength) * geometry_std
    return motion, geometry


def train(
    videos: Sequence[Video], config: TrainConfig, *, progress: bool = True
) -> tuple[SpottingNetwork | NetworkEnsemble, list[dict[str, float]]]:
    """Train a network with `config.method` on random windows of `videos`; with
    ``config.ensemble`` = N > 1, N networks, member i exactly as one network trained with seed
    ``config.seed + i``, returned as a `NetworkEnsemble` whose history is the members' mean per
    epoch (the member's own losses are in its own run with that seed).

    The same videos, config and seed give identical weights (seeded torch and numpy,
    deterministic algorithms, the caller's global RNG state left untouched).

    Args:
        videos: the training videos with their features.
        config: the training configuration.
        progress: show a tqdm bar.

    Returns:
        (the network or ensemble in eval mode, the history: one dict per epoch with the mean loss
        and parts).

    Raises:
        ConfigError: no training video, or features whose widths do not fit the network.
    """
    if config.ensemble == 1:
        return _train_network(videos, config, progress=progress)
    members, histories = [], []
    for i in range(config.ensemble):
        log.info("training ensemble member %d of %d (seed %d)", i + 1, config.ensemble, config.seed + i)
        member = dataclasses.replace(config, seed=config.seed + i, ensemble=1)
        network, history = _train_network(videos, member, progress=progress)
        members.append(network)
        histories.append(history)
    mean_history = [
        {k: float(np.mean([h[epoch][k] for h in histories if k in h[epoch]])) for k in histories[0][epoch]}
        for epoch in range(len(histories[0]))
    ]
    return NetworkEnsemble(members).eval(), mean_history


def _train_network(
    videos: Sequence[Video], config: TrainConfig, *, progress: bool = True
) -> tuple[SpottingNetwork, list[dict[str, float]]]:
    """Train one network with `config.method` on random windows of `videos` (`train`, which
    documents the arguments and errors)."""
    if not videos:
        raise ConfigError("train: no training videos")
    for _, f in videos:
        if (
            f.motion.shape[1] != config.network.motion_dim
            or f.geometry.shape[1] != config.network.geometry_dim
        ):
            raise ConfigError(
                f"video {f.video}: features {f.motion.shape[1]} + {f.geometry.shape[1]} wide, network "
                f"expects motion_dim={config.network.motion_dim}, geometry_dim={config.network.geometry_dim}"
            )
    from engine import distributed

    group = distributed.current()  # None unless under torchrun (engine/distributed.py)
    if group is not None:  # refuse a batch that does not split evenly, before any training
        whole = METHODS.get(config.method).whole_videos
        group.rows(min(config.batch_size, len(videos)) if whole else config.batch_size)
    rng = np.random.default_rng(config.seed)
    history: list[dict[str, float]] = []
    videos = [(rec, network_inputs(feats, config.network)) for rec, feats in videos]
    if config.clip_s is not None:  # clips labelled on their own (engine.data.clips)
        from engine.data.clips import cut_into_clips

        videos = [clip for rec, feats in videos for clip in cut_into_clips(rec, feats, config.clip_s)]
    with torch.random.fork_rng(devices=[]), _deterministic():
        torch.manual_seed(config.seed)
        network = build_network(config.network)
        ok = [(f, np.asarray(f.valid, dtype=bool)) for _, f in videos]
        all_motion = torch.from_numpy(np.concatenate([f.motion[m] for f, m in ok]))
        all_geometry = torch.from_numpy(np.concatenate([f.geometry[m] for f, m in ok]))
        if config.network.input_norm:
            set_input_statistics(network, all_motion, all_geometry)
        if config.augment:
            motion_std = all_motion.double().std(dim=0).float().nan_to_num(0.0)  # (Dm,)
            geometry_std = all_geometry.double().std(dim=0).float().nan_to_num(0.0)  # (Dg,)
        del all_motion, all_geometry
        method = build_method(config.method, network, config.method_options)
        if method.whole_videos:  # an epoch is one shuffled pass over the videos
            steps = config.steps_per_epoch or max(1, math.ceil(len(videos) / config.batch_size))
        else:
            total = sum(len(f.valid) for _, f in videos)
            steps = config.steps_per_epoch or max(1, math.ceil(total / (config.window * config.batch_size)))
        targets = [method.targets(rec, feats, rng) for rec, feats in videos]
        method.prepare(targets)
        optimiser = torch.optim.Adam(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        network.train()
        # Under torchrun the forward and backward go through DDP (gradients averaged); the method
        # keeps the plain network for its own eval-mode forwards.
        model = group.wrap(network) if group is not None else network
        progress = progress and (group is None or group.is_main)
        bar = tqdm(range(config.epochs), desc=f"train {config.method}", disable=not progress, leave=False)
        step = 0
        order: list[int] = []
        for epoch in bar:
            sums: dict[str, float] = {}
            for _ in range(steps):
                fresh = method.on_step(step, epoch, network, videos, targets, rng)
                if fresh is not None:
                    if len(fresh) != len(videos):
                        raise RuntimeError(
                            f"method {config.method}: on_step returned targets for {len(fresh)} "
                            f"videos, training has {len(videos)}"
                        )
                    targets = fresh
                network.train()
                if method.whole_videos:
                    size = min(config.batch_size, len(videos))
                    while len(order) < size:  # refill with a fresh shuffled pass
                        order.extend(int(i) for i in rng.permutation(len(videos)))
                    picks, order = order[:size], order[size:]
                    motion, geometry, valid, tgt = _whole_batch(videos, targets, method, picks)
                else:
                    motion, geometry, valid, tgt = _batch(
                        videos, targets, method, config.window, config.batch_size, rng
                    )
                if config.augment:
                    motion, geometry = augment_batch(
                        motion, geometry, motion_std, geometry_std, config.augment, rng
                    )
                step += 1
                if group is not None:  # every process drew the same global batch: take our rows
                    motion, geometry, valid, tgt = group.shard(motion, geometry, valid, tgt)
                model.train()
                outputs = model(motion, geometry, valid)
                loss, parts = method.loss(outputs, tgt, valid)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
                optimiser.step()
                for k, v in {"loss": float(loss.detach()), **parts}.items():
                    sums[k] = sums.get(k, 0.0) + v
            means = {k: v / steps for k, v in sums.items()}
            if group is not None:
                means = group.mean(means)
            record = {"epoch": float(epoch), **means}
            history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            log.debug("epoch %d: %s", epoch, record)
    network.eval()
    return network, history


def predict(network: SpottingNetwork | NetworkEnsemble, method: Method, feats: VideoFeatures) -> Scores:
    """Scores of a whole video in one causal forward (equal to streaming it snippet by snippet);
    an ensemble's are its members' averaged (`engine.models.ensemble_scores`).

    Returns:
        (class_scores (T, 2) ME/MaE, actionness (T,)), NaN at invalid snippets so that no
        proposal covers them.
    """
    was_training = network.training
    network.eval()
    feats = network_inputs(feats, network.config)
    with torch.no_grad():
        motion = torch.from_numpy(np.asarray(feats.motion, dtype=np.float32))[None]  # (1, T, Dm)
        geometry = torch.from_numpy(np.asarray(feats.geometry, dtype=np.float32))[None]  # (1, T, Dg)
        valid = torch.from_numpy(np.asarray(feats.valid, dtype=bool))[None]  # (1, T)
        cls, act = ensemble_scores(network, method, motion, geometry, valid)  # (1, T, 2), (1, T)
    network.train(was_training)
    cls, act = cls[0].double().numpy(), act[0].double().numpy()  # as `Method.scores`
    ok = np.asarray(feats.valid, dtype=bool)
    return np.where(ok[:, None], cls, np.nan), np.where(ok, act, np.nan)


def spot(
    scores: Scores,
    video: Video,
    config: ProposalConfig,
    *,
    shift: bool = True,
    candidates: Candidates | None = None,
) -> list[Interval]:
    """The proposals of one video at an operating point (frames of the video's own numbering);
    ``shift=False``: before the offset shift (`engine.proposals.propose`). ``candidates``: the
    video's `spot_candidates` for a configuration of the same candidate key (reused)."""
    if candidates is None:
        candidates = spot_candidates(scores, video, config)
        if candidates is None:
            return []
    return propose(
        candidates.cls,
        config,
        snippet_s=candidates.snippet_s,
        fps=candidates.fps,
        shift=shift,
        candidates=candidates,
    )


def spot_candidates(scores: Scores, video: Video, config: ProposalConfig) -> Candidates | None:
    """Steps 1-3 of `spot` (`engine.proposals.propose_candidates`); None for a video without a
    valid score (which `spot` gives no proposal)."""
    record, feats = video
    cls, act = scores
    if not np.isfinite(act).any():
        return None
    return propose_candidates(
        cls,
        config,
        snippet_s=feats.snippet_s,
        fps=feats.fps,
        actionness=act,
        frame_offset=feats.first_frame,
        n_frames=record.n_frames,
    )


def grid_counts(
    videos: Sequence[Video],
    scores: Mapping[str, Scores],
    base: ProposalConfig,
    grid: Mapping[str, Sequence[Any]],
    *,
    memo: bool = True,
) -> Iterator[tuple[dict[str, Any], ProposalConfig, Metrics, Metrics]]:
    """Every grid point's pooled ME and MaE counts on the videos: (setting, configuration, ME
    counts, MaE counts), as `evaluate` of `spot` at that point would give them.

    Points come in the order of ``itertools.product`` over the grid's fields with the post-NMS
    fields (`engine.proposals.POST_NMS_FIELDS`: the offset shift) moved last, so they vary
    fastest. The videos are spotted once per setting of the other fields. A prediction matches
    only truths of its own type and the shift moves each type by its own amount, so each type's
    counts are taken once per value of its shift and the points add them up: the cost grows
    with the number of ME plus MaE shifts, not with their product. The candidate spans and
    their scores are made once per video and `engine.proposals.candidate_key` (thresholds,
    mode) and shared by every point that only types, filters or suppresses them differently; a
    setting's counts are shared with the settings of equal `engine.proposals.proposal_key` (fields
    its type rule does not read), and a video's counts of one type are made once per distinct set
    of its proposals of that type and shift (``memo=False``: both at every point, for checks).
    """
    pre = [name for name in grid if name not in POST_NMS_FIELDS]
    post = [name for name in grid if name in POST_NMS_FIELDS]
    truths = {rec.video: list(rec.expressions) for rec, _ in videos}
    made: dict[tuple[Any, ...], dict[str, Candidates | None]] = {}
    seen: dict[tuple[Any, ...], Metrics] | None = {} if memo else None  # `_type_counts`' memo
    # Counts by `proposal_key`: settings that differ only in fields their type rule ignores.
    done: dict[ProposalConfig, dict[tuple[ExpressionType, float], Metrics]] | None = {} if memo else None
    for values in itertools.product(*(grid[name] for name in pre)):
        setting = dict(zip(pre, values, strict=True))
        first = dataclasses.replace(base, **setting)
        points = [
            dataclasses.replace(first, **dict(zip(post, v, strict=True)))
            for v in itertools.product(*(grid[name] for name in post))
        ]
        same = proposal_key(first)
        counts = None if done is None else done.get(same)
        if counts is None:
            key = candidate_key(first)
            if key not in made:
                made[key] = {
                    rec.video: spot_candidates(scores[rec.video], (rec, feats), first)
                    for rec, feats in videos
                }
            shared = made[key]
            raw = {
                rec.video: []
                if shared[rec.video] is None
                else spot(scores[rec.video], (rec, feats), first, shift=False, candidates=shared[rec.video])
                for rec, feats in videos
            }
            counts = {
                (etype, seconds): _type_counts(videos, raw, truths, first, etype, seconds, seen)
                for etype, k in ((ExpressionType.ME, 0), (ExpressionType.MAE, 1))
                for seconds in dict.fromkeys(p.offset_shift_s[k] for p in points)
            }
            if done is not None:
                done[same] = counts
        for config in points:
            me_s, mae_s = config.offset_shift_s
            extra = {name: getattr(config, name) for name in post}
            me, mae = counts[(ExpressionType.ME, me_s)], counts[(ExpressionType.MAE, mae_s)]
            yield {**setting, **extra}, config, me, mae


def _type_counts(
    videos: Sequence[Video],
    raw: Mapping[str, list[Interval]],
    truths: Mapping[str, list[Interval]],
    config: ProposalConfig,
    etype: ExpressionType,
    seconds: float,
    seen: dict[tuple[Any, ...], Metrics] | None = None,
) -> Metrics:
    """One type's pooled counts of the unshifted proposals ``raw`` with that type's offsets moved
    by ``seconds`` (the other type's predictions cannot change them).

    ``seen`` memoises a video's counts by its proposals of the type and the shift: grid points
    that type, filter or suppress differently mostly leave a video's proposals of one type as
    they were, and matching is most of a grid search's time.
    """
    moved = dataclasses.replace(config, offset_shift_s=(seconds, seconds))
    total = Metrics()
    for rec, feats in videos:
        own = tuple(iv for iv in raw[rec.video] if iv.type == etype)
        key = (rec.video, etype, seconds, own)
        counts = None if seen is None else seen.get(key)
        if counts is None:
            shifted = shift_offsets(
                own, moved, feats.fps, frame_offset=feats.first_frame, n_frames=rec.n_frames
            )
            counts = match(shifted, truths[rec.video]).of(etype)
            if seen is not None:
                seen[key] = counts
        total = total + counts
    return total


def spot_and_evaluate(
    network: SpottingNetwork, method: Method, point: ProposalConfig, videos: Sequence[Video]
) -> tuple[dict[str, Scores], dict[str, list[Interval]], Report]:
    """Score, spot at an operating point and evaluate videos (a held-out subject, or any set).

    Returns:
        (video id -> scores, video id -> spotted intervals, the report on these videos).
    """
    scores = {r.video: predict(network, method, f) for r, f in videos}
    preds = {r.video: spot(scores[r.video], (r, f), point) for r, f in videos}
    report = evaluate(
        preds, {r.video: list(r.expressions) for r, _ in videos}, {r.video: f.fps for r, f in videos}
    )
    return scores, preds, report


def choose_operating_point(
    videos: Sequence[Video],
    scores: Mapping[str, Scores],
    base: ProposalConfig,
    grid: Mapping[str, Sequence[Any]] = OPERATING_GRID,
    *,
    latency_budget: Mapping[str, float] | None = LATENCY_BUDGET_S,
    lookahead_s: float = 0.0,
) -> tuple[ProposalConfig, Report]:
    """The grid point of best pooled overall F1 (then ME F1) on these videos whose live event
    latency, estimated on the same videos (`engine.latency.event_latency`), fits the budget.

    Call it with the *training* videos' predictions only; the held-out identity (subject) must
    never reach it (`loso` keeps to that).

    Args:
        videos: the videos to tune on.
        scores: video id -> its `predict` scores.
        base: the proposal configuration whose grid fields are replaced.
        grid: field name -> values (fields of `ProposalConfig`).
        latency_budget: type -> the most seconds its median event latency may take; the points
            are tried best first until one fits (at most `MAX_LATENCY_CANDIDATES`; when none
            does, the best point is kept with a warning). None: no budget.
        lookahead_s: the network's look-ahead, counted in every event's latency.

    Returns:
        (the chosen configuration, its report on these videos).

    Raises:
        ConfigError: an empty grid or a bad budget.
    """
    check_latency_budget(latency_budget)
    ranked: list[tuple[tuple[float, float], int, ProposalConfig]] = []
    for i, (_, cfg, me, mae) in enumerate(grid_counts(videos, scores, base, grid)):
        ranked.append((((me + mae).f1, me.f1), i, cfg))
    if not ranked:
        raise ConfigError("choose_operating_point: empty grid")
    ranked.sort(key=lambda r: (-r[0][0], -r[0][1], r[1]))  # best first; the first (coarsest) wins ties
    chosen = ranked[0][2]
    if latency_budget is not None:
        fits: dict[ProposalConfig, bool] = {}  # points of equal proposals stream alike: once each
        for _, _, cfg in ranked[:MAX_LATENCY_CANDIDATES]:
            same = proposal_key(cfg)
            if same not in fits:
                latency = event_latency(videos, scores, cfg, lookahead_s=lookahead_s)
                fits[same] = latency.within(latency_budget)
            if fits[same]:
                chosen = cfg
                break
        else:
            # A trained network is not thrown away for it (a look-ahead of 0.5 s or more alone
            # exceeds the ME budget): the best point is kept and the overrun said.
            log.warning(
                "none of the %d best grid points keeps the median event latency within %s s "
                "(look-ahead %.2f s); keeping the best point regardless",
                min(len(ranked), MAX_LATENCY_CANDIDATES),
                dict(latency_budget),
                lookahead_s,
            )
    preds = {rec.video: spot(scores[rec.video], (rec, feats), chosen) for rec, feats in videos}
    truths = {rec.video: list(rec.expressions) for rec, _ in videos}
    return chosen, evaluate(preds, truths, {rec.video: feats.fps for rec, feats in videos})


@dataclass
class LosoResult:
    """Outcome of a leave-one-out run; folds are named by the held-out identity (or subject).

    Attributes:
        report: counts pooled over the held-out folds.
        folds: held-out identity -> its report.
        operating_points: held-out identity -> the proposal configuration chosen on its training set.
        train_reports: held-out identity -> the training-set report at that operating point.
        predictions: video id -> spotted intervals (held-out videos only).
        scores: video id -> its held-out scores.
        histories: held-out identity -> training history.
        networks: held-out identity -> the network trained without it (eval mode).
        wall_s: seconds for the whole run.
        group: ``"identity"`` or ``"subject"``: what each fold holds out.
        plan: held-out identity -> its `Fold` (held-out and training subjects).
        latency: held-out identity -> the live event latency of its held-out videos at its
            operating point (`engine.latency.event_latency`).
        configs: held-out identity -> the training configuration its network was trained with
            (the given one, or what its training identities selected).
        selections: held-out identity -> what the inner leave-one-out chose (`engine.selection`),
            when candidates were offered.
    """

    report: Report
    folds: dict[str, Report]
    operating_points: dict[str, ProposalConfig]
    train_reports: dict[str, Report]
    predictions: dict[str, list[Interval]]
    scores: dict[str, Scores]
    histories: dict[str, list[dict[str, float]]]
    networks: dict[str, SpottingNetwork]
    wall_s: float
    group: str = "identity"
    plan: dict[str, Fold] = field(default_factory=dict)
    latency: dict[str, EventLatency] = field(default_factory=dict)
    configs: dict[str, TrainConfig] = field(default_factory=dict)
    selections: dict[str, Any] = field(default_factory=dict)


def loso(
    dataset: Dataset,
    features: Mapping[str, VideoFeatures],
    config: TrainConfig,
    *,
    group: str = "identity",
    folds: int | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    progress: bool = True,
    operating_point: str = "own",
    select: Callable[[Dataset], Any] | None = None,
) -> LosoResult:
    """Leave-one-identity-out (default) or leave-one-subject-out training and evaluation.

    Args:
        dataset: the annotated dataset (folds from ``Dataset.folds(group)``).
        features: video id -> features (videos without features are skipped with a warning).
        config: training configuration (the same seed for every fold).
        group: ``"identity"``: each fold holds out every subject of one real person (equal to
            ``"subject"`` where each subject is its own person); ``"subject"``: one subject.
        folds: run only the first this many folds (quick runs); None: all.
        grid: the operating-point grid (``choose_operating_point``); None: the method's own
            (`Method.operating_grid`).
        progress: tqdm bars.
        operating_point: what each fold's operating point is chosen on: ``"own"``, its own
            network's scores of its training videos; ``"out-of-fold"``, scores of those videos
            from an inner leave-one-out run over the fold's training groups
            (`cross_validated_scores`), i.e. scores of people the scoring network never saw, as
            the held-out person's are (nested; about as many more trainings per fold as it has
            training groups). The fold's training report is then on those scores.
        select: chooses a fold's training configuration from its training identities alone
            (`engine.selection.selector`: an inner leave-one-out per candidate); it is given
            the fold's training subset and returns a `engine.selection.Selection`, whose
            ``config`` the fold trains with (an out-of-fold operating point then reuses its
            ``scores``). None: every fold trains with `config`.

    Returns:
        The `LosoResult`, its folds named by the held-out identity (or subject).

    Raises:
        ConfigError: an unknown group, fewer than two groups (three for "out-of-fold"), a bad
            `folds` or `operating_point`.
    """
    if operating_point not in OPERATING_POINT_SOURCES:
        raise ConfigError(
            f"operating_point={operating_point!r}: choose one of {', '.join(OPERATING_POINT_SOURCES)}"
        )
    start = time.monotonic()
    if grid is None:
        grid = METHODS.get(config.method).operating_grid()  # type: ignore[attr-defined]
    missing = [v.video for v in dataset.videos if v.video not in features]
    if missing:
        log.warning("%d video(s) have no features and are left out: %s", len(missing), missing[:5])
    plan = dataset.folds(group)
    nested = select is not None
    if (operating_point == "out-of-fold" or nested) and len(plan) < 3:
        what = "out-of-fold operating points" if operating_point == "out-of-fold" else "--select"
        raise ConfigError(
            f"{what} need at least 3 {group} groups (each fold's training "
            f"set is split again, leave-one-out); {dataset.name} has {len(plan)}"
        )
    if folds is not None:
        check_number("train config", "folds", folds, 1, len(plan), integer=True)
        plan = plan[:folds]
    fold_reports: dict[str, Report] = {}
    points: dict[str, ProposalConfig] = {}
    train_reports: dict[str, Report] = {}
    predictions: dict[str, list[Interval]] = {}
    all_scores: dict[str, Scores] = {}
    histories: dict[str, list[dict[str, float]]] = {}
    networks: dict[str, SpottingNetwork] = {}
    latency: dict[str, EventLatency] = {}
    configs: dict[str, TrainConfig] = {}
    selections: dict[str, Any] = {}
    desc = "LOIO" if group == "identity" else "LOSO"
    for fold in tqdm(plan, desc=desc, disable=not progress):
        held_out = fold.name
        train_set, test_set = set(fold.train_subjects), set(fold.test_subjects)
        if train_set & test_set:  # pragma: no cover - Dataset.folds guarantees it
            raise RuntimeError(f"fold {held_out}: subjects {sorted(train_set & test_set)} on both sides")
        train_videos = [
            (r, features[r.video]) for r in dataset.videos if r.subject in train_set and r.video in features
        ]
        test_videos = [
            (r, features[r.video]) for r in dataset.videos if r.subject in test_set and r.video in features
        ]
        fold_config, inner_scores = config, None
        if select is not None:
            chosen = select(dataset.subset(fold.train_subjects))
            selections[held_out] = chosen
            fold_config, inner_scores = chosen.config, chosen.scores
            log.info("fold %s %s: its training identities select %s", group, held_out, chosen.label)
        configs[held_out] = fold_config
        network, history = train(train_videos, fold_config, progress=progress)
        method = build_method(fold_config.method, network, fold_config.method_options)
        if operating_point == "out-of-fold":
            if inner_scores is not None:
                train_scores = inner_scores
            else:
                inner = dataset.subset(fold.train_subjects)
                train_scores = cross_validated_scores(inner, features, config, group=group, progress=progress)
        else:
            train_scores = {r.video: predict(network, method, f) for r, f in train_videos}
        lookahead_s = lookahead_seconds(config.network.lookahead, train_videos[0][1].config)
        point, train_report = choose_operating_point(
            train_videos, train_scores, fold_config.proposals, grid, lookahead_s=lookahead_s
        )
        test_scores, preds, fold_reports[held_out] = spot_and_evaluate(network, method, point, test_videos)
        latency[held_out] = event_latency(test_videos, test_scores, point, lookahead_s=lookahead_s)
        networks[held_out] = network
        points[held_out] = point
        train_reports[held_out] = train_report
        predictions.update(preds)
        all_scores.update(test_scores)
        histories[held_out] = history
        log.info(
            "fold %s %s (%s): train F1 %.3f, held-out F1 %.3f",
            group,
            held_out,
            ", ".join(fold.test_subjects),
            train_report.overall.f1,
            fold_reports[held_out].overall.f1,
        )
    return LosoResult(
        report=evaluate_folds(fold_reports),
        folds=fold_reports,
        operating_points=points,
        train_reports=train_reports,
        predictions=predictions,
        scores=all_scores,
        histories=histories,
        networks=networks,
        wall_s=time.monotonic() - start,
        group=group,
        plan={f.name: f for f in plan},
        latency=latency,
        configs=configs,
        selections=selections,
    )


OPERATING_POINT_SOURCES: tuple[str, ...] = ("own", "out-of-fold")


def cross_validated_scores(
    dataset: Dataset,
    features: Mapping[str, VideoFeatures],
    config: TrainConfig,
    *,
    group: str = "identity",
    progress: bool = True,
) -> dict[str, Scores]:
    """Out-of-fold scores of every video: each from a network trained on every other group of
    `dataset` (a leave-one-out over its groups, without choosing operating points). An operating
    point chosen on them is chosen on what a new person's scores look like, not on the cleaner
    scores of people the network learnt.

    Raises:
        ConfigError: fewer than two groups.
    """
    scores: dict[str, Scores] = {}
    for fold in tqdm(dataset.folds(group), desc="out-of-fold", disable=not progress):
        train_set, test_set = set(fold.train_subjects), set(fold.test_subjects)
        train_videos = [
            (r, features[r.video]) for r in dataset.videos if r.subject in train_set and r.video in features
        ]
        network, _ = train(train_videos, config, progress=progress)
        method = build_method(config.method, network, config.method_options)
        for r in dataset.videos:
            if r.subject in test_set and r.video in features:
                scores[r.video] = predict(network, method, features[r.video])
    return scores


def _json_default(value: object) -> object:
    if dataclasses.is_dataclass(value) and hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"run.json: {type(value).__name__} is not JSON serialisable")
