"""Timelines people look at: per-snippet facial motion with ground truth and spotted intervals."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stream.features import ROI_SETS, feature_names
from stream.intervals import ExpressionType, Interval

# ROI name prefixes grouped into the face parts a reader thinks in.
FACE_PARTS: dict[str, tuple[str, ...]] = {
    "brows": ("brow_", "glabella"),
    "eyes": ("eye_",),
    "nose / cheeks": ("nose_", "cheek_", "nasolabial_"),
    "mouth / chin": ("mouth_", "lip_", "chin"),
}
TYPE_COLOURS = {ExpressionType.ME: "tab:red", ExpressionType.MAE: "tab:blue"}


def part_channels(roi_set: str, channel: str, block: int = 0, config=None) -> dict[str, np.ndarray]:
    """Column indices of one channel (e.g. 'mag') per face part, in a snippet feature block.

    Args:
        roi_set: ROI set name.
        channel: per-ROI channel name ('u', 'v', 'mag' for motion; 'dx', 'dy', 'texture' for geometry).
        block: 0 = mean over the snippet's frames, 1 = max, 2 = min.
        config: the FeatureConfig the features were made with (default: the default one).
    """
    motion, geometry = feature_names(ROI_SETS.build(roi_set), config)
    names = motion if channel in ("u", "v", "mag") else geometry
    out = {}
    for part, prefixes in FACE_PARTS.items():
        idx = [i for i, n in enumerate(names) if n.endswith("." + channel) and n.startswith(prefixes)]
        out[part] = np.array(idx) + block * len(names)
    return out


def plot_timeline(
    out: Path,
    *,
    start_s: np.ndarray,
    snippet_s: float,
    motion: np.ndarray,
    geometry: np.ndarray,
    valid: np.ndarray,
    roi_set: str = "mesh17",
    fps: float = 30.0,
    truths: Sequence[Interval] = (),
    predictions: Sequence[Interval] = (),
    title: str = "",
    config=None,
) -> Path:
    """Write a PNG: per face part, the strongest ROI's motion and texture change per snippet.

    Args:
        out: PNG path.
        start_s: (T,) snippet start times.
        snippet_s: snippet length in seconds.
        motion: (T, Dm) snippet motion features.
        geometry: (T, Dg) snippet geometry / appearance features.
        valid: (T,) snippet validity; invalid spans are greyed out.
        roi_set: the ROI set the features were made with.
        fps: frame rate of the intervals' frame numbers.
        truths: ground-truth intervals (shaded, ME red, MaE blue).
        predictions: spotted intervals (bars under the plot).
        title: figure title.
        config: the FeatureConfig the features were made with (default: the default one).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    t = start_s + snippet_s / 2
    fig, axes = plt.subplots(2, 1, figsize=(14, 6), sharex=True, constrained_layout=True)
    for ax, (channel, feats, label) in zip(
        axes,
        (("mag", motion, "motion |flow| (px, 128 px crop)"), ("texture", geometry, "texture change")),
        strict=True,
    ):
        for part, cols in part_channels(roi_set, channel, config=config).items():
            series = np.where(valid, feats[:, cols].max(axis=1), np.nan)
            ax.plot(t, series, lw=1.0, label=part)
        for iv in truths:
            ax.axvspan(iv.onset / fps, (iv.offset + 1) / fps, color=TYPE_COLOURS[iv.type], alpha=0.18, lw=0)
        for j in np.flatnonzero(~valid):
            ax.axvspan(start_s[j], start_s[j] + snippet_s, color="0.85", alpha=0.6, lw=0)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    for iv in predictions:
        axes[1].plot(
            [iv.onset / fps, (iv.offset + 1) / fps],
            [0, 0],
            lw=6,
            solid_capstyle="butt",
            color=TYPE_COLOURS[iv.type],
        )
    axes[0].legend(loc="upper right", fontsize=8, ncol=4)
    axes[1].set_xlabel("time (s)   shaded: ground truth (red ME, blue MaE), grey: no face / no flow")
    if title:
        axes[0].set_title(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
