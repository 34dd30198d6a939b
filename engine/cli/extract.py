"""`mespot extract`: snippet features of videos, frame folders and lists, cached."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.options import add_feature_options, bundled_clip, expand_inputs, feature_config
from stream.errors import MespotError


def extract_cached(
    source: Path, config, cache, *, force: bool, quiet: bool, source_fps: float | None
) -> Path:
    """The cached feature file of one input, extracting it first when needed."""
    from tqdm import tqdm

    from stream.extract_cache import require_snippets
    from stream.pipeline import Extraction, stream_snippets
    from stream.ring import Snippet

    if not force and (hit := cache.lookup(source)) is not None:
        print(f"{source}: cached {hit}", file=sys.stderr)
        return hit
    with tqdm(desc=source.name, unit=" snippets", leave=False, disable=quiet) as bar:

        def counted(outputs):
            for o in outputs:
                if isinstance(o, Snippet):
                    bar.update()
                yield o

        result = Extraction.collect(
            counted(stream_snippets(source, config, policy="replay", source_fps=source_fps)), config
        )
    require_snippets(source, result.valid)  # before storing: an empty file would be reused later
    npz = cache.store(source, result)
    gaps = [e for e in result.events if e.kind.value in ("face_lost", "time_gap")]
    print(
        f"{source}: {len(result.valid)} snippets ({int(result.valid.sum())} valid, "
        f"{len(gaps)} gaps) -> {npz}",
        file=sys.stderr,
    )
    return npz


def cmd_extract(args: argparse.Namespace) -> int:
    from stream.errors import SourceEmpty
    from stream.extract_cache import FeatureCache

    config = feature_config(args)
    cache = FeatureCache(Path(args.out), config)
    sources = expand_inputs(args.inputs) if args.inputs else [bundled_clip()]
    failures = 0
    print(f"feature config {config.digest()} -> {cache.folder}", file=sys.stderr)
    if args.ray is not None:
        from stream.ray_extract import extract_on_ray

        _, failed = extract_on_ray(
            sources,
            config,
            cache,
            address=None if args.ray == "local" else args.ray,
            cpus=args.ray_cpus,
            force=args.force,
            source_fps=args.source_fps,
        )
        for empty, why in failed.values():
            if empty and args.skip_empty:
                print(f"warning: skipped: {why}", file=sys.stderr)
            else:
                print(f"error: {why}", file=sys.stderr)
                failures += 1
        return 1 if failures else 0
    for source in sources:
        try:
            extract_cached(
                source, config, cache, force=args.force, quiet=args.quiet, source_fps=args.source_fps
            )
        except SourceEmpty as exc:
            if args.skip_empty:
                print(f"warning: skipped: {exc}", file=sys.stderr)
            else:
                print(f"error: {exc}", file=sys.stderr)
                failures += 1
        except MespotError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ex = sub.add_parser(
        "extract",
        help="snippet features of videos, frame folders or dataset lists",
        description="Extract snippet features with the same pipeline live runs use. "
        "With no INPUT, extracts the real clip bundled with mespot.",
    )
    ex.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="video file, frame folder, or a list file (.txt/.csv) of them",
    )
    ex.add_argument("--out", required=True, help="output folder (a subfolder per feature configuration)")
    ex.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="spread the inputs over a Ray cluster (ray://head:10001, auto); with no address, a "
        "local one on this machine; the cache and its files are those of a serial run (needs the "
        "ray extra)",
    )
    ex.add_argument("--ray-cpus", type=int, help="the local Ray cluster's size in CPUs (default: every core)")
    ex.add_argument(
        "--skip-empty",
        action="store_true",
        help="an input that yields no valid snippet is skipped with a warning (default: an error, exit 1)",
    )
    add_feature_options(ex)
    ex.set_defaults(func=cmd_extract)
    return ex
