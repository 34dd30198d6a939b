"""The methods' configurations: frozen, validated dataclasses, one per method, and no torch.

A bundle's ``train_config.method_options`` is checked against its method's configuration when
the bundle is read (`engine.train_config.TrainConfig`); keeping the configurations here, apart
from the methods' losses, lets an ONNX or TensorRT deployment read and check a bundle without
importing torch. Each method module re-exports its own (``engine.methods.gim.GimConfig``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Self

import numpy as np

from engine.data.labels import BACKGROUND, MAE, ME
from engine.proposals import MAE_MAX_SECONDS, ME_MAX_SECONDS
from stream.config import check_number, refuse_unknown_keys
from stream.errors import ConfigError

PAPER_FPS = 30  # GIM's frame counts are at 30 fps (both datasets aligned to it, GIM sec. 4.1)
GIM_POINT_MODES = ("gaussian_apex", "apex", "random")
IAC_SOURCES = ("embedding", "intensity")
SIMILARITIES = ("cosine", "dot")
PWES_POINT_MODES = ("random", "apex")
PSEUDO_SOURCES = ("eval", "batch")
PWES_MIL_K = ("divisor", "points")


def _frames(k: int) -> float:
    """The paper's k frames (at 30 fps) in seconds."""
    return k / PAPER_FPS


def check_bool(prefix: str, name: str, value: object) -> None:
    """Raise ConfigError unless `value` is a bool."""
    if not isinstance(value, bool):
        raise ConfigError(f"{prefix} {name}={value!r}: must be true or false")


def background_gap(prefix: str, value: object) -> float | tuple[float, float] | None:
    """Check a ``background_gap_s``: null, one number in (0, 60] for every point, or two (ME,
    MaE), one per point type. Returns it normalised (a JSON list becomes a tuple)."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    pair = isinstance(value, Sequence) and not isinstance(value, str | bytes)
    items = list(value) if pair else [value]
    if (pair and len(items) != 2) or any(
        isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 60 for v in items
    ):
        raise ConfigError(
            f"{prefix} background_gap_s={value!r}: must be null, a number in (0, 60] or two "
            "(ME, MaE), one per point type"
        )
    return (float(items[0]), float(items[1])) if pair else float(items[0])


@dataclass(frozen=True)
class MethodConfig:
    """Base of the frozen, validated per-method configurations (no fields of its own)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a dict (e.g. read from JSON); unknown keys fail naming the known ones."""
        refuse_unknown_keys(cls, data, cls.__name__)
        return cls(**dict(data))


@dataclass(frozen=True)
class FullConfig(MethodConfig):
    """Configuration of the `full` method.

    Attributes:
        class_balance: weight each class by its inverse frequency in the training targets.
        max_class_weight: cap on a class weight relative to background's, in [1, 1000] (a class
            seen a handful of times must not dominate).
        label_smoothing: cross-entropy label smoothing in [0, 0.5).
    """

    class_balance: bool = True
    max_class_weight: float = 50.0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.class_balance, bool):
            raise ConfigError(f"full config class_balance={self.class_balance!r}: must be true or false")
        check_number("full config", "max_class_weight", self.max_class_weight, 1.0, 1000.0)
        check_number("full config", "label_smoothing", self.label_smoothing, 0.0, 0.5, hi_open=True)


@dataclass(frozen=True)
class GimConfig(MethodConfig):
    """Configuration of the `gim` method.

    Ranges given by the paper in frames are stored in seconds (paper frames are at 30 fps:
    k frames = k / 30 s) and become ``round(seconds / feats.snippet_s)`` snippets on each side,
    halves rounded up (`half_width`). At 8/30 s per snippet: k_c 16 / 32 frames -> apex search
    +-1 / +-1 snippet (k_c / 4) and duration window +-1 / +-2 (k_c / 2); k_s1 3 / 5 frames -> 0 / 1;
    k_s2 2 / 4 frames -> 0 / 1. At 4/30 s: search +-1 / +-2, window +-2 / +-4, k_s1 1 / 1, k_s2 1 / 1.
    Pairs are (ME, MaE).

    Attributes:
        kc_s: the general duration k_c of an ME / MaE in seconds (paper: 16 / 32 frames), in
            (0, 10]. The pseudo-apex is searched within k_c / 4 of the point (eq. 1), the
            duration within k_c / 2 of the pseudo-apex (eq. 3).
        ks1_s: stage-1 hard-label half-width k_s1 in seconds (3 / 5 frames), in [0, 10].
        ks2_s: stage-2 Gaussian half-width k_s2 in seconds (2 / 4 frames), in [0, 10].
        delta: duration expansion delta of eq. 4, in [1, 10] (1.2).
        theta_start: duration threshold theta at epoch 0, in (0, 1) (0.8).
        theta_end: theta after the decay, in (0, theta_start] (0.5).
        theta_epochs: epochs over which theta falls linearly, counted from the start of training,
            in [0, 10000] (30; 0: theta_end throughout).
        stage1_epochs: epochs of stage 1 (hard labels around the point), in [0, 10000] (1).
        stage2_epochs: epochs of stage 2 (Gaussian around the point), in [0, 10000] (4). Stage 3
            (full GIM) runs from epoch stage1_epochs + stage2_epochs to the end (the paper: 1, 4
            and 95 of 100 epochs).
        soft_labels: Gaussian soft labels; False assigns hard labels 1 on the same ranges
            (the paper's soft vs hard ablation, tables 2-3).
        point_mode: which frame of each expression is labelled: "gaussian_apex" (the paper: drawn
            from a Gaussian around the apex, inside the expression), "apex" (the annotated apex)
            or "random" (uniform over the expression, as PWES).
        point_sigma: the standard deviation of "gaussian_apex" as a fraction of the expression's
            length in frames, in [0, 1] (1/6: +-3 sigma spans one expression length; the paper
            gives no value).
        temperature: IAC temperature tau, in (0, 10] (0.1; not given by the paper).
        lambda_smooth: lambda_1, weight of L_smooth, in [0, 1000] (0.1).
        lambda_norm: lambda_2, weight of L_norm, in [0, 1000] (2.5).
        lambda_iac: lambda_3, weight of L_IAC, in [0, 1000] (1.4e-4).
        background_gap_s: hard negatives. Snippets at least this many seconds from every point
            of their video (all of a video without points: `point_free_background`) lie in no
            expression; the ``N_exp`` of them with the highest intensity join eq. 6's
            pseudo-neutral set, which otherwise holds only the easiest snippets (4.0 s, the
            longest a macro-expression lasts); two numbers (ME, MaE) give each point type its
            own gap, the longest expression of that type; None: eq. 6 alone, in (0, 60].
        iac_source: the features L_IAC contrasts: "embedding" (the shared snippet feature F,
            as the paper names it) or "intensity" (the intensity branch's hidden features).
        half_min_s, half_max_s: stage-3 soft-label half-range ``delta L / 2`` is clamped into
            [half_min_s, half_max_s] seconds per class (ME, MaE): a duration prior that keeps one
            bad intensity estimate from labelling a whole stretch or a single snippet (the
            authors' code clamps to ME 4-8 and MaE 8-18 frames; the defaults). (0, 10) and
            (10, 10) turn the clamp off.
    """

    kc_s: tuple[float, float] = (_frames(16), _frames(32))
    ks1_s: tuple[float, float] = (_frames(3), _frames(5))
    ks2_s: tuple[float, float] = (_frames(2), _frames(4))
    delta: float = 1.2
    theta_start: float = 0.8
    theta_end: float = 0.5
    theta_epochs: int = 30
    stage1_epochs: int = 1
    stage2_epochs: int = 4
    soft_labels: bool = True
    point_mode: str = "gaussian_apex"
    point_sigma: float = 1 / 6
    temperature: float = 0.1
    lambda_smooth: float = 0.1
    lambda_norm: float = 2.5
    lambda_iac: float = 1.4e-4
    background_gap_s: float | tuple[float, float] | None = 4.0
    iac_source: str = "embedding"
    half_min_s: tuple[float, float] = (_frames(4), _frames(8))
    half_max_s: tuple[float, float] = (_frames(8), _frames(18))

    # name -> (check, the range as the message writes it)
    # field -> (lo, hi, lo_open, hi_open) for `check_number`
    _NUMBERS: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {
        "delta": (1.0, 10.0, False, False),
        "theta_start": (0.0, 1.0, True, True),
        "point_sigma": (0.0, 1.0, False, False),
        "temperature": (0.0, 10.0, True, False),
        "lambda_smooth": (0.0, 1000.0, False, False),
        "lambda_norm": (0.0, 1000.0, False, False),
        "lambda_iac": (0.0, 1000.0, False, False),
    }

    def __post_init__(self) -> None:
        pairs = (
            ("kc_s", 0.0, True),
            ("ks1_s", 0.0, False),
            ("ks2_s", 0.0, False),
            ("half_min_s", 0.0, False),
            ("half_max_s", 0.0, False),
        )
        for name, lo, exclusive in pairs:
            raw = getattr(self, name)
            if isinstance(raw, np.ndarray):
                raw = raw.tolist()
            if isinstance(raw, str | bytes) or not isinstance(raw, Sequence) or len(raw) != 2:
                raise ConfigError(f"gim config {name}={raw!r}: must be two numbers (ME, MaE) in seconds")
            for v in raw:
                check_number("gim config", name, v, lo, 10.0, lo_open=exclusive)
            # Lists (from JSON) become tuples so the config stays hashable.
            object.__setattr__(self, name, (float(raw[0]), float(raw[1])))
        for name, (lo, hi, lo_open, hi_open) in self._NUMBERS.items():
            check_number("gim config", name, getattr(self, name), lo, hi, lo_open=lo_open, hi_open=hi_open)
        # (0, theta_start]: the threshold only falls
        check_number("gim config", "theta_end", self.theta_end, 0.0, self.theta_start, lo_open=True)
        for name in ("theta_epochs", "stage1_epochs", "stage2_epochs"):
            check_number("gim config", name, getattr(self, name), 0, 10_000, integer=True)
        if not isinstance(self.soft_labels, bool):
            raise ConfigError(f"gim config soft_labels={self.soft_labels!r}: must be true or false")
        if self.point_mode not in GIM_POINT_MODES:
            raise ConfigError(f"gim config point_mode={self.point_mode!r}: choose one of {GIM_POINT_MODES}")
        for c in range(2):
            if self.half_min_s[c] > self.half_max_s[c]:
                raise ConfigError(
                    f"gim config half_min_s={list(self.half_min_s)!r}: each must be at most half_max_s="
                    f"{list(self.half_max_s)!r}"
                )
        object.__setattr__(self, "background_gap_s", background_gap("gim config", self.background_gap_s))
        if self.iac_source not in IAC_SOURCES:
            raise ConfigError(f"gim config iac_source={self.iac_source!r}: choose one of {IAC_SOURCES}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (pairs as lists)."""
        d = super().to_dict()
        for name in ("kc_s", "ks1_s", "ks2_s", "half_min_s", "half_max_s"):
            d[name] = list(d[name])
        return d


@dataclass(frozen=True)
class McwesConfig(MethodConfig):
    """Configuration of the `mcwes` method (defaults: the paper's CAS(ME)^2 settings, sec. 4.3).

    Attributes:
        h_mae: h of MaE in eq. 7 (k = max(1, floor(T / h)) of the T valid snippets), in [1, 1000].
        h_me: h of ME (sparser than MaE, so larger h), in [1, 1000].
        h_background: h of the background (the densest class, smallest h), in [1, 1000].
            The paper's h = [7, 9, 5] lists (MaE, ME, background).
        duration_window_s: eq. 9's neighbourhood eta in seconds, in (0, 10]; eta =
            max(1, round(duration_window_s / snippet_s)) snippets. Default 16/30 s: the paper's
            2 snippets of 8 frames at 30 fps, i.e. eta = 2 at snippet_s = 8/30 s and 4 at 4/30 s.
        omega_low: eq. 10's lower bound omega_l on the deviation (x mean deviation), in [0, 100].
        omega_high: eq. 10's upper bound omega_u, in [0, 100] and above omega_low. The paper's
            CAS(ME)^2 values are 1.2 / 1.4 (SAMM-LV: 1.5 / 1.8).
        feature_pairs: video pairs per batch for L_fc (the paper's 3 pairs of 6 videos), in
            [0, 64]; 0 turns the term off.
        lambda_saliency: weight of L_sc (eq. 22: 1), in [0, 100].
        lambda_mil: weight of L_dc^1 (1), in [0, 100].
        lambda_mil_attention: weight of L_dc^2 (1), in [0, 100].
        lambda_duration: lambda1, weight of L_dc^3 (0.5), in [0, 100].
        lambda_feature: lambda2, weight of L_fc (0.5), in [0, 100].
        lambda_sparsity: lambda3, weight of L_sl (0.8; SAMM-LV 0.7), in [0, 100].
        lambda_guide: lambda4, weight of L_gl (0.8; SAMM-LV 0.7), in [0, 100].
        lambda_smooth: weight of a temporal smoothness term on the three attentions, the mean
            |A_(t+1) - A_t| over consecutive valid snippets (not in the paper; 0.5: an
            expression is one run of attention, not a burst per snippet; 0 turns it off), in
            [0, 100].
        feature_similarity: eq. 11's similarity of fused features: "cosine" (the paper's
            words, the default) or "dot" (raw dot products of unnormalised features, which
            saturate eq. 12's softmax so L_fc stops acting).
    """

    h_mae: float = 7.0
    h_me: float = 9.0
    h_background: float = 5.0
    duration_window_s: float = 16 / 30
    omega_low: float = 1.2
    omega_high: float = 1.4
    feature_pairs: int = 3
    lambda_saliency: float = 1.0
    lambda_mil: float = 1.0
    lambda_mil_attention: float = 1.0
    lambda_duration: float = 0.5
    lambda_feature: float = 0.5
    lambda_sparsity: float = 0.8
    lambda_guide: float = 0.8
    lambda_smooth: float = 0.5
    feature_similarity: str = "cosine"

    _prefix: ClassVar[str] = "mcwes config"
    _weights: ClassVar[tuple[str, ...]] = (
        "lambda_saliency",
        "lambda_mil",
        "lambda_mil_attention",
        "lambda_duration",
        "lambda_feature",
        "lambda_sparsity",
        "lambda_guide",
        "lambda_smooth",
    )

    def __post_init__(self) -> None:
        p = self._prefix
        for name in ("h_mae", "h_me", "h_background"):
            check_number(p, name, getattr(self, name), 1.0, 1000.0)
        check_number(p, "duration_window_s", self.duration_window_s, 0.0, 10.0)
        if self.duration_window_s <= 0:
            raise ConfigError(
                f"{p} duration_window_s={self.duration_window_s!r}: must be a number in (0, 10]"
            )
        check_number(p, "omega_low", self.omega_low, 0.0, 100.0)
        check_number(p, "omega_high", self.omega_high, 0.0, 100.0)
        if self.omega_high <= self.omega_low:
            raise ConfigError(
                f"{p} omega_high={self.omega_high!r}: must be above omega_low={self.omega_low!r}"
            )
        check_number(p, "feature_pairs", self.feature_pairs, 0, 64, integer=True)
        if self.feature_similarity not in SIMILARITIES:
            raise ConfigError(
                f"{p} feature_similarity={self.feature_similarity!r}: choose one of {SIMILARITIES}"
            )
        for name in self._weights:
            check_number(p, name, getattr(self, name), 0.0, 100.0)

    @property
    def divisors(self) -> tuple[float, float, float]:
        """h in the T-CAM column order (background, ME, MaE)."""
        h = [0.0, 0.0, 0.0]
        h[BACKGROUND], h[ME], h[MAE] = self.h_background, self.h_me, self.h_mae
        return h[0], h[1], h[2]


@dataclass(frozen=True)
class PwesConfig(McwesConfig):
    """Configuration of the `pwes` method (defaults: the paper's CAS(ME)^2 settings, sec. 4.3).

    The MC-WES fields keep their meaning (`McwesConfig`); PWES changes these defaults:
    lambda_duration = lambda_feature = 0 (the baseline drops L_dc^3 and L_fc), lambda_mil =
    lambda_mil_attention = 1.0 (lambda1, on both halves of L_vcl), lambda_guide = 1.0 (lambda4),
    lambda_sparsity = 0.8 (lambda5), lambda_saliency = 1.0 (L_aml); mespot's attention
    smoothness term is off (lambda_smooth = 0: the snippet labels already shape the runs).

    Attributes:
        lambda_snippet: lambda2, weight of the focal snippet loss L_scl (1.0), in [0, 100].
        lambda_contrast: lambda3, weight of the DFCL InfoNCE loss L_fcl (0.1), in [0, 100].
        point_mode: "random" (a uniform frame inside each expression, the paper's) or "apex".
        use_mplg: generate MPLG pseudo labels after pre-training (off: points only).
        use_dfcl: the DFCL memory bank and contrastive loss after pre-training.
        pretrain_steps: optimiser steps before MPLG and DFCL start (80 on CAS(ME)^2, 50 on
            SAMM-LV), in [0, 1e6].
        select_ratio: k of MPLG: the top k * T refined attention snippets are foreground
            candidates and the 2k * T lowest attention snippets background (0.3), in (0, 1].
        fg_threshold: theta, the probability a pseudo foreground snippet must exceed (0.8;
            SAMM-LV 0.9), in [0, 1).
        temperature: tau of the InfoNCE loss (1.0), in (0, 100].
        regions_background: region-level background vectors per video K_bg (10; SAMM-LV 8),
            in [1, 256].
        regions_me: region-level ME vectors per video (2), in [1, 256].
        regions_mae: region-level MaE vectors per video (3), in [1, 256].
        background_gap_s: snippets at least this many seconds from every point of their video
            (every snippet of a video without points) are background labels from the first
            step, and MPLG picks its foreground among the other snippets only ((0.5, 4.0) s:
            each point's gap is the longest expression of its type, so no such snippet lies in
            an expression: `point_free_background`; one number gives every point that gap,
            4.0 s the longest a macro-expression lasts); None: the paper's
            background, the 2k lowest-attention snippets of MPLG, in (0, 60].
        pseudo_source: where MPLG reads the network: "eval" (a forward of every training video
            in eval mode, no dropout, at the first step of each epoch once pre-training is
            over, the `Method` contract) or "batch" (the training forward of each batch,
            dropout on, as the paper's Fig. 2 draws it).
        class_regions: MPLG makes a snippet pseudo foreground of a class only within the
            longest expression of that class (ME 0.5 s, MaE 4 s) of one of its points
            (`engine.data.labels.class_regions`): every expression carries a point of its own
            type, so nothing farther can be one (on; off: the paper's MPLG, any snippet, any
            class).
        class_balance: the focal snippet loss averages each class over its own labelled
            snippets, then over the classes, so that the few ME snippets weigh as much as the
            many MaE and background ones (on since the tenth session: with the point-counted
            MIL every fold's training identities score higher with it; off: one mean over all
            labelled snippets, eq. 16, the paper's).
        mil_k: how many snippets the video-level MIL pools per expression class: "points" (the
            default since the eighth session: the video's points of the class times the longest
            expression of the class in snippets, ME 0.5 s and MaE 4 s, at most T; the points
            count the expressions, so the pooled snippets can cover them and little else) or
            "divisor" (MC-WES eq. 7, k = T / h whatever the video holds, the paper's). The
            background keeps T / h.
    """

    lambda_duration: float = 0.0
    lambda_feature: float = 0.0
    lambda_sparsity: float = 0.8
    lambda_guide: float = 1.0
    lambda_smooth: float = 0.0
    lambda_snippet: float = 1.0
    lambda_contrast: float = 0.1
    point_mode: str = "random"
    use_mplg: bool = True
    use_dfcl: bool = True
    pretrain_steps: int = 80
    select_ratio: float = 0.3
    fg_threshold: float = 0.8
    temperature: float = 1.0
    regions_background: int = 10
    regions_me: int = 2
    regions_mae: int = 3
    background_gap_s: float | tuple[float, float] | None = (ME_MAX_SECONDS, MAE_MAX_SECONDS)
    pseudo_source: str = "eval"
    class_balance: bool = True
    class_regions: bool = True
    mil_k: str = "points"

    _prefix: ClassVar[str] = "pwes config"
    _weights: ClassVar[tuple[str, ...]] = (*McwesConfig._weights, "lambda_snippet", "lambda_contrast")

    def __post_init__(self) -> None:
        super().__post_init__()
        p = self._prefix
        if self.point_mode not in PWES_POINT_MODES:
            raise ConfigError(f"{p} point_mode={self.point_mode!r}: choose one of {PWES_POINT_MODES}")
        check_bool(p, "use_mplg", self.use_mplg)
        check_bool(p, "use_dfcl", self.use_dfcl)
        check_bool(p, "class_balance", self.class_balance)
        check_bool(p, "class_regions", self.class_regions)
        check_number(p, "pretrain_steps", self.pretrain_steps, 0, 1_000_000, integer=True)
        check_number(p, "select_ratio", self.select_ratio, 0.0, 1.0, lo_open=True)
        check_number(p, "fg_threshold", self.fg_threshold, 0.0, 1.0, hi_open=True)
        check_number(p, "temperature", self.temperature, 0.0, 100.0, lo_open=True)
        for name in ("regions_background", "regions_me", "regions_mae"):
            check_number(p, name, getattr(self, name), 1, 256, integer=True)
        object.__setattr__(self, "background_gap_s", background_gap(p, self.background_gap_s))
        if self.pseudo_source not in PSEUDO_SOURCES:
            raise ConfigError(f"{p} pseudo_source={self.pseudo_source!r}: choose one of {PSEUDO_SOURCES}")
        if self.mil_k not in PWES_MIL_K:
            raise ConfigError(f"{p} mil_k={self.mil_k!r}: choose one of {PWES_MIL_K}")

    @property
    def regions(self) -> tuple[int, int, int]:
        """K_c in the T-CAM column order (background, ME, MaE)."""
        k = [0, 0, 0]
        k[BACKGROUND], k[ME], k[MAE] = self.regions_background, self.regions_me, self.regions_mae
        return k[0], k[1], k[2]


#: Each method's configuration class, by the method's registry name.
METHOD_CONFIGS: Mapping[str, type[MethodConfig]] = {
    "full": FullConfig,
    "gim": GimConfig,
    "mcwes": McwesConfig,
    "pwes": PwesConfig,
}
