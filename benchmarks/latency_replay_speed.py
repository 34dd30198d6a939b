"""How much the multi-top replay gains by proposing only where a span can end.

    python benchmarks/latency_replay_speed.py RUN ANNOTATIONS --features FEATURE_CACHE [--folds N]

For the first N fold bundles of a `mespot train --loso` run of an attention method (`mcwes`,
`pwes`): the fold network's scores of its training videos, then the live event latency of its
operating point in multi-top mode (`engine.latency.event_latency`, which streams every video
through `engine.online.OnlineSpotter`, as the operating-point search does per candidate), two ways
in one run:

- every push: `propose` on the sliding window at every snippet (how the replay ran before);
- skipping: `propose` only at the pushes where some top-k mask selects the snippet before the
  judged end and not the one at it (`OnlineSpotter._top_run_may_end`, how it runs now).

It checks that both publish the same events with the same latencies and prints both times and
their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from calibration.operating_point import bundle_scores
from engine.bundle import load_bundle
from engine.data import load_dataset
from engine.data.features import dataset_features
from engine.latency import event_latency
from engine.online import OnlineSpotter


@contextmanager
def proposing_at_every_push():
    """The spotter as it was: no push is skipped."""
    kept = OnlineSpotter._top_run_may_end
    OnlineSpotter._top_run_may_end = lambda *args: True  # type: ignore[method-assign]
    try:
        yield
    finally:
        OnlineSpotter._top_run_may_end = kept  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a mespot train --loso output folder (folds/*.mespot)")
    ap.add_argument("annotations", type=Path)
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=1, help="fold bundles timed (default 1)")
    args = ap.parse_args()
    dataset = load_dataset("csv", args.annotations)
    media = args.annotations.resolve().parent / "videos"
    print(f"# latency_replay_speed {date.today()}: {args.run}")
    print("| fold | videos | events (ME, MaE) | every push | skipping | ratio |")
    print("|---|---|---|---|---|---|")
    for path in sorted((args.run / "folds").glob("*.mespot"))[: args.folds]:
        bundle = load_bundle(path)
        features = dataset_features(dataset, media, args.features, bundle.feature_config)
        trained = set(bundle.metadata["train_subjects"])
        videos = [(v, features[v.video]) for v in dataset.videos if v.subject in trained]
        scores = bundle_scores(bundle, videos)  # the whole-sequence forward, as training scores
        point = dataclasses.replace(bundle.proposal_config(), mode="top")
        t0 = time.perf_counter()
        with proposing_at_every_push():
            before = event_latency(videos, scores, point, lookahead_s=bundle.lookahead_s)
        t1 = time.perf_counter()
        now = event_latency(videos, scores, point, lookahead_s=bundle.lookahead_s)
        t2 = time.perf_counter()
        if now != before:
            raise SystemExit(f"{path.name}: the two replays differ")
        events = tuple(len(now.seconds[k]) for k in ("me", "mae"))
        print(
            f"| {path.stem} | {len(videos)} | {events} | {t1 - t0:.1f} s | {t2 - t1:.1f} s | "
            f"{(t1 - t0) / (t2 - t1):.1f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
