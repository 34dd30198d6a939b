"""The live event latency of an operating point, estimated offline, and the live budget.

A live run publishes an interval once the online spotter (`engine.online.OnlineSpotter`) knows no
later snippet can change it; how long that takes depends on the operating point (a low threshold
keeps a run open while the score decays) and on the scores. `event_latency` streams whole videos'
scores through the same spotter (`engine.online.replay`), snippet by snippet as live, and counts
for each interval it publishes the snippets it waited after the interval's last one: the live
event latency (docs/events.md) less the capture-to-score time, which `PROCESSING_ALLOWANCE_S`
stands in for, plus the network's look-ahead. Training and calibration choose operating points
within `LATENCY_BUDGET_S` this way, on hundreds of events where a live benchmark sees a handful.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.online import replay
from stream.errors import ConfigError

if TYPE_CHECKING:
    from engine.proposals import ProposalConfig

_LABELS = {"me": "ME", "mae": "MaE"}
_SLACK_S = 1e-9

# The live budget: median seconds from an expression's offset frame to its event, per type.
LATENCY_BUDGET_S: Mapping[str, float] = MappingProxyType({"me": 0.5, "mae": 1.5})
# Capture-to-score time a live run adds to the online spotter's wait (docs/benchmarks.md: p50
# 37-42 ms, p95 58-61 ms on the project's 2-core machine), rounded up.
PROCESSING_ALLOWANCE_S = 0.1
# Candidates whose latency is estimated before the search gives up (each costs one replay of
# every video chosen on through the online spotter, about 2 s for SynthSpot-v2).
MAX_LATENCY_CANDIDATES = 60


@dataclass(frozen=True)
class EventLatency:
    """How long a live run would take to publish each type's events at one operating point.

    Attributes:
        seconds: type ("me", "mae") -> per event, the online spotter's wait after the
            interval's last snippet plus the look-ahead and the processing allowance, in seconds,
            over every event published while streaming (those only the end of a video flushed
            are left out: live, the stream goes on).
        lookahead_s: the bundle's look-ahead included.
        processing_s: the capture-and-scoring allowance included.
    """

    seconds: Mapping[str, tuple[float, ...]]
    lookahead_s: float = 0.0
    processing_s: float = PROCESSING_ALLOWANCE_S

    def p50(self, kind: str) -> float | None:
        """Median latency of a type's events (None without events)."""
        values = self.seconds.get(kind, ())
        return float(np.median(values)) if values else None

    def within(self, budget: Mapping[str, float]) -> bool:
        """Whether every budgeted type's median fits its budget (a type without events fits)."""
        return all((m := self.p50(kind)) is None or m <= limit + _SLACK_S for kind, limit in budget.items())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lookahead_s": self.lookahead_s, "processing_s": self.processing_s}
        for kind in ("me", "mae"):
            values = self.seconds.get(kind, ())
            out[kind] = {
                "events": len(values),
                "p50_s": None if not values else round(float(np.median(values)), 4),
                "p95_s": None if not values else round(float(np.percentile(values, 95)), 4),
                "max_s": None if not values else round(float(max(values)), 4),
            }
        return out

    def summary(self) -> str:
        parts = []
        for kind in ("me", "mae"):
            values = self.seconds.get(kind, ())
            parts.append(
                f"{_LABELS[kind]} p50 {np.median(values):.2f} s, p95 {np.percentile(values, 95):.2f} s "
                f"({len(values)} events)"
                if values
                else f"{_LABELS[kind]} no events"
            )
        return "; ".join(parts)


def event_latency(
    videos: Sequence[tuple[Any, Any]],
    scores: Mapping[str, tuple[np.ndarray, np.ndarray]],
    config: ProposalConfig,
    *,
    lookahead_s: float = 0.0,
    processing_s: float = PROCESSING_ALLOWANCE_S,
) -> EventLatency:
    """The live event latency of an operating point, estimated by streaming each video's scores
    through the online spotter (`engine.online.replay`), snippet by snippet as live.

    Args:
        videos: (VideoRecord, VideoFeatures) pairs.
        scores: video id -> (class scores (T, 2), actionness (T,)), NaN at invalid snippets.
        config: the operating point.
        lookahead_s: the network's look-ahead, added to every event.
        processing_s: the capture-and-scoring allowance, added to every event.
    """
    seconds: dict[str, list[float]] = {"me": [], "mae": []}
    for rec, feats in videos:
        cls, act = scores[rec.video]
        if not np.isfinite(act).any():
            continue
        streamed, _ = replay(
            cls,
            act,
            config,
            snippet_s=feats.snippet_s,
            fps=feats.fps,
            frame_offset=feats.first_frame,
            n_frames=rec.n_frames,
        )
        for s in streamed:
            wait = s.latency_snippets * feats.snippet_s
            seconds[s.interval.type.value].append(wait + lookahead_s + processing_s)
    return EventLatency(
        MappingProxyType({k: tuple(v) for k, v in seconds.items()}), float(lookahead_s), float(processing_s)
    )


def pooled(latencies: Sequence[EventLatency]) -> EventLatency:
    """The events of several latency estimates together (e.g. the held-out folds of a run)."""
    if not latencies:
        return EventLatency(MappingProxyType({"me": (), "mae": ()}))
    kinds = ("me", "mae")
    merged = {k: tuple(v for lat in latencies for v in lat.seconds.get(k, ())) for k in kinds}
    first = latencies[0]
    return EventLatency(MappingProxyType(merged), first.lookahead_s, first.processing_s)


def check_latency_budget(budget: Mapping[str, float] | None) -> None:
    """Validate a latency budget (type -> seconds, types "me" / "mae")."""
    if budget is None:
        return
    for kind, limit in budget.items():
        if kind not in ("me", "mae"):
            raise ConfigError(f"latency budget type {kind!r}: choose me or mae")
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int | float)
            or not math.isfinite(limit)
            or limit <= 0
        ):
            raise ConfigError(f"latency budget {kind}={limit!r}: must be a number of seconds > 0")


__all__ = [
    "LATENCY_BUDGET_S",
    "MAX_LATENCY_CANDIDATES",
    "PROCESSING_ALLOWANCE_S",
    "EventLatency",
    "check_latency_budget",
    "event_latency",
    "pooled",
]
