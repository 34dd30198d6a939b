"""How much sharing the candidate spans speeds up the operating-point grid search.

    python benchmarks/operating_grid_speed.py RUN ANNOTATIONS --features FEATURE_CACHE \\
        [--folds N] [--search-only]

For the first N fold bundles of a `mespot train --loso` run: the fold network's scores of its
training videos, then the spotting of every pre-NMS grid point of two grids (GIM's and the
attention methods' `mcwes` / `pwes` grid, which adds the proposal mode, the type rule and the
duration check) on those scores, two ways in one run:

- fresh: `engine.train.spot` from the scores at every point (how the search spotted before);
- shared: the candidate spans and their OIC scores made once per video and candidate key
  (`engine.proposals.candidate_key`), then typed, filtered and suppressed per point (how
  `engine.train.grid_counts` spots now).

It checks that both give the same intervals at every point and prints both times and their
ratio. The offset shift is left out: it applies after NMS to both alike.

Then the whole search of the attention methods' grid, offset shifts included
(`engine.train.grid_counts`), with and without its memos (a setting's counts shared with the
settings of equal `engine.proposals.proposal_key`, each video's counts per distinct set of
proposals of one type): the same counts at every point, both times and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from datetime import date
from pathlib import Path

from engine.bundle import load_bundle
from engine.data import load_dataset
from engine.data.features import dataset_features
from engine.methods.gim import GimMethod
from engine.methods.mcwes import McwesMethod
from engine.proposals import POST_NMS_FIELDS, candidate_key
from engine.train import grid_counts, predict, spot, spot_candidates


def settings(grid):
    pre = [name for name in grid if name not in POST_NMS_FIELDS]
    for values in itertools.product(*(grid[name] for name in pre)):
        yield dict(zip(pre, values, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("annotations", type=Path)
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=1)
    ap.add_argument(
        "--search-only", action="store_true", help="only the whole search, with and without its memo"
    )
    args = ap.parse_args()
    dataset = load_dataset("csv", args.annotations)
    media = args.annotations.resolve().parent / "videos"
    print(f"# operating_grid_speed {date.today()}: {args.run}")
    for path in sorted((args.run / "folds").glob("*.mespot"))[: args.folds]:
        bundle = load_bundle(path)
        features = dataset_features(dataset, media, args.features, bundle.feature_config)
        trained = set(bundle.metadata["train_subjects"])
        videos = [(v, features[v.video]) for v in dataset.videos if v.subject in trained]
        network = bundle.network()
        method = bundle.method(network)
        scores = {r.video: predict(network, method, f) for r, f in videos}
        base = bundle.train_config.proposals
        grids = (("gim", GimMethod.operating_grid()), ("mcwes/pwes", McwesMethod.operating_grid()))
        for name, grid in () if args.search_only else grids:
            points = [dataclasses.replace(base, **s) for s in settings(grid)]
            t0 = time.perf_counter()
            fresh = [[spot(scores[r.video], (r, f), p, shift=False) for r, f in videos] for p in points]
            t_fresh = time.perf_counter() - t0
            t0 = time.perf_counter()
            made: dict = {}
            shared = []
            for p in points:
                key = candidate_key(p)
                if key not in made:
                    made[key] = [spot_candidates(scores[r.video], (r, f), p) for r, f in videos]
                shared.append(
                    [
                        [] if c is None else spot(scores[r.video], (r, f), p, shift=False, candidates=c)
                        for (r, f), c in zip(videos, made[key], strict=True)
                    ]
                )
            t_shared = time.perf_counter() - t0
            print(
                f"{path.name}, {name} grid: {len(points)} pre-NMS points x {len(videos)} videos, "
                f"{len(made)} candidate sets; fresh {t_fresh:.1f} s, shared {t_shared:.1f} s, "
                f"ratio {t_fresh / t_shared:.1f}x; same intervals at every point: {fresh == shared}",
                flush=True,
            )
        grid = McwesMethod.operating_grid()
        t0 = time.perf_counter()
        plain = list(grid_counts(videos, scores, base, grid, memo=False))
        t_plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        memoised = list(grid_counts(videos, scores, base, grid))
        t_memo = time.perf_counter() - t0
        print(
            f"{path.name}, mcwes/pwes grid with offset shifts: {len(plain)} points; counted at every "
            f"point {t_plain:.1f} s, memoised {t_memo:.1f} s, ratio {t_plain / t_memo:.1f}x; the same "
            f"counts at every point: {plain == memoised}",
            flush=True,
        )


if __name__ == "__main__":
    main()
