"""Choosing training options on training identities: an inner leave-one-identity-out.

A training option (augmentation strength, learning rate, a method option) is a choice like the
operating point, and a choice made by looking at the held-out identity's result is made on the
test set. `select_training_config` makes it the honest way: every candidate configuration is
run leave-one-identity-out over the *training* identities only, each training video scored by a
network that never saw its person (`engine.train.cross_validated_scores`); each candidate's
operating point is chosen on those out-of-fold scores, and the candidate whose pooled F1 there
is best wins (the first listed on a tie, so list the default first).

Under ``mespot train --loso --select ...`` this runs inside every outer fold (nested), so the
held-out person reaches neither the option nor the operating point; without ``--loso`` it runs
once over all identities and the bundle is trained with the winner. Its cost is a leave-one-out
run per candidate: candidates x training identities more trainings per fold.

The candidates are written on the command line as ``FIELD=[V1, V2, ...]`` (a JSON list), FIELD a
`TrainConfig` schedule field (`SELECTABLE_FIELDS`) or ``option.KEY`` for a method option
(``-O KEY=VALUE``); several ``--select`` options give every combination.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.bundle import lookahead_seconds
from engine.data.features import VideoFeatures
from engine.data.records import Dataset
from engine.methods import METHODS
from engine.train import choose_operating_point, cross_validated_scores
from engine.train_config import TrainConfig
from stream.errors import ConfigError

log = logging.getLogger(__name__)

#: `TrainConfig` fields a selection may vary (the seed is not a choice; the method and network
#: are what is being evaluated, not options of it).
SELECTABLE_FIELDS: tuple[str, ...] = (
    "augment",
    "lr",
    "epochs",
    "batch_size",
    "weight_decay",
    "steps_per_epoch",
    "clip_s",  # null: whole videos
)
OPTION_PREFIX = "option."


@dataclass(frozen=True)
class Candidate:
    """One training configuration on offer.

    Attributes:
        label: what it changes, e.g. ``augment=0.5, option.mil_k=points``.
        config: the full training configuration.
    """

    label: str
    config: TrainConfig


@dataclass
class Selection:
    """What an inner leave-one-out chose.

    Attributes:
        chosen: index of the winning candidate.
        config: its training configuration.
        labels: every candidate's label, in the order offered.
        f1: each candidate's pooled overall F1 on its out-of-fold scores at its operating point.
        me_f1: the same for MEs (the tie-break).
        scores: the winner's out-of-fold scores of the training videos (video id -> scores),
            which an out-of-fold operating point can reuse.
    """

    chosen: int
    config: TrainConfig
    labels: list[str]
    f1: list[float]
    me_f1: list[float]
    scores: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return self.labels[self.chosen]

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.label,
            "inner_f1": dict(zip(self.labels, self.f1, strict=True)),
            "inner_me_f1": dict(zip(self.labels, self.me_f1, strict=True)),
        }


def parse_selection(specs: Sequence[str] | None) -> dict[str, list[Any]]:
    """``FIELD=[V1, V2, ...]`` strings -> field -> candidate values (order kept).

    Raises:
        ConfigError: naming the spec: no '=', a value that is not a JSON list of at least two
            distinct values, an unknown field, or a field given twice.
    """
    out: dict[str, list[Any]] = {}
    for spec in specs or []:
        key, sep, raw = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--select {spec!r}: expected FIELD=[V1, V2, ...]")
        if key not in SELECTABLE_FIELDS and not (
            key.startswith(OPTION_PREFIX) and len(key) > len(OPTION_PREFIX)
        ):
            raise ConfigError(
                f"--select {spec!r}: {key!r} is not selectable; choose one of "
                f"{', '.join(SELECTABLE_FIELDS)} or {OPTION_PREFIX}KEY (a method option)"
            )
        try:
            values = json.loads(raw)
        except json.JSONDecodeError:
            values = None
        if not isinstance(values, list) or len(values) < 2:
            raise ConfigError(
                f"--select {spec!r}: the values must be a JSON list of two or more, e.g. [0, 0.5]"
            )
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ConfigError(f"--select {spec!r}: a value is listed twice")
        if key in out:
            raise ConfigError(f"--select {spec!r}: {key} is given twice")
        out[key] = values
    return out


def candidates(base: TrainConfig, selection: Mapping[str, Sequence[Any]]) -> list[Candidate]:
    """Every combination of the selected values applied to `base` (first values first).

    Raises:
        ConfigError: a value the configuration refuses (naming the field, via `TrainConfig`).
    """
    if not selection:
        return [Candidate("(as given)", base)]
    keys = list(selection)
    out: list[Candidate] = []
    for values in itertools.product(*(selection[k] for k in keys)):
        fields: dict[str, Any] = {}
        options = dict(base.method_options)
        for key, value in zip(keys, values, strict=True):
            if key.startswith(OPTION_PREFIX):
                options[key[len(OPTION_PREFIX) :]] = value
            else:
                fields[key] = value
        label = ", ".join(f"{k}={json.dumps(v)}" for k, v in zip(keys, values, strict=True))
        try:
            config = dataclasses.replace(base, **fields, method_options=options)
        except ConfigError as err:
            raise ConfigError(f"--select candidate {label}: {err}") from err
        out.append(Candidate(label, config))
    return out


def select_training_config(
    dataset: Dataset,
    features: Mapping[str, VideoFeatures],
    offered: Sequence[Candidate],
    *,
    group: str = "identity",
    grid: Mapping[str, Sequence[Any]] | None = None,
    progress: bool = True,
) -> Selection:
    """The candidate with the best pooled out-of-fold F1 (then ME F1) over `dataset`'s groups.

    Each candidate's operating point is chosen on its own out-of-fold scores with its method's
    grid (`engine.train.choose_operating_point`, within the live latency budget), so candidates
    are compared as each would be deployed. Only `dataset` is seen: pass the training identities.
    `grid`: the operating-point grid; None: each candidate's method's own.

    Raises:
        ConfigError: no candidate, or fewer than two groups in `dataset`.
    """
    if not offered:
        raise ConfigError("select_training_config: no candidate configuration")
    videos = [(r, features[r.video]) for r in dataset.videos if r.video in features]
    f1: list[float] = []
    me_f1: list[float] = []
    kept: list[dict[str, Any]] = []
    best = 0
    for i, cand in enumerate(offered):
        scores = cross_validated_scores(dataset, features, cand.config, group=group, progress=progress)
        cfg = cand.config
        points = grid if grid is not None else METHODS.get(cfg.method).operating_grid()  # type: ignore[attr-defined]
        lookahead_s = lookahead_seconds(cfg.network.lookahead, videos[0][1].config)
        _, report = choose_operating_point(videos, scores, cfg.proposals, points, lookahead_s=lookahead_s)
        f1.append(report.overall.f1)
        me_f1.append(report.me.f1)
        kept.append(scores)
        log.info("candidate %s: out-of-fold F1 %.3f (ME %.3f)", cand.label, f1[-1], me_f1[-1])
        if (f1[i], me_f1[i]) > (f1[best], me_f1[best]):
            best = i
    return Selection(best, offered[best].config, [c.label for c in offered], f1, me_f1, kept[best])


def selector(
    features: Mapping[str, VideoFeatures],
    offered: Sequence[Candidate],
    *,
    group: str = "identity",
    grid: Mapping[str, Sequence[Any]] | None = None,
    progress: bool = True,
) -> Callable[[Dataset], Selection]:
    """`select_training_config` over whatever training subset it is given, for
    `engine.train.loso`'s ``select`` (each fold hands it its training identities)."""
    if not offered:
        raise ConfigError("selector: no candidate configuration")

    def choose(training: Dataset) -> Selection:
        return select_training_config(training, features, offered, group=group, grid=grid, progress=progress)

    return choose
