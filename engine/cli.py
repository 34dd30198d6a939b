"""The `mespot` command line (it spans stream and engine, and engine depends on stream).

mespot extract [INPUT ...] --out DIR     snippet features of files, frame folders or lists
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources
from pathlib import Path

from stream.errors import MespotError

log = logging.getLogger("mespot")

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
LIST_SUFFIXES = {".txt", ".lst", ".list", ".csv"}


def bundled_clip() -> Path:
    """The real clip shipped with mespot (used when `extract` is given no input)."""
    return Path(str(resources.files("stream.assets").joinpath("single_face.mp4")))


def read_list_file(path: Path) -> str:
    """The text of a dataset list file.

    Raises:
        SourceCorrupt: it is not UTF-8 text (a video or an archive given a .txt name), naming it.
    """
    from stream.errors import SourceCorrupt

    data = path.read_bytes()
    nul = data.find(b"\0")
    if nul >= 0:
        raise SourceCorrupt(
            path,
            f"not a list file: binary data (a NUL byte at offset {nul}); a list is UTF-8 text, "
            "one path per line",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceCorrupt(
            path,
            f"not a list file: not UTF-8 text (byte {exc.start}); a list is UTF-8 text, one path per line",
        ) from None


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files and frame folders to extract, from paths and dataset lists.

    A dataset list is a text file with one path per line (relative paths are taken from the
    list's own folder; blank lines and lines starting with # are skipped; for a .csv the first
    column is the path and a header row naming 'video' or 'path' is skipped).

    Raises:
        SourceCorrupt: a list file that is not text.
    """
    out: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.suffix.lower() in LIST_SUFFIXES and p.is_file():
            for n, line in enumerate(read_list_file(p).splitlines(), 1):
                item = line.split(",")[0].strip() if p.suffix.lower() == ".csv" else line.strip()
                if not item or item.startswith("#") or (n == 1 and item.lower() in {"video", "path"}):
                    continue
                q = Path(item)
                out.append(q if q.is_absolute() else p.parent / q)
        else:
            out.append(p)
    return out


def feature_config(args: argparse.Namespace):
    """The FeatureConfig that the feature options (`add_feature_options`) ask for; unset ones keep
    their default."""
    from dataclasses import fields

    from stream.config import FeatureConfig

    given = {}
    for f in fields(FeatureConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            given[f.name] = tuple(value) if isinstance(value, list) else value
    return FeatureConfig(**given)


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


def load_annotations(args: argparse.Namespace):
    """The dataset named by --dataset from the annotation file, and the folder of its media."""
    from engine.data import load_dataset

    dataset = load_dataset(args.dataset, args.annotations, **({"root": Path(args.root)} if args.root else {}))
    media = Path(args.media) if args.media else Path(args.annotations).resolve().parent / "videos"
    return dataset, media


def annotated_features(args: argparse.Namespace, dataset, media, config):
    """The features of every video of a dataset, and the dataset itself, less the videos that
    yield no valid snippet when the user asked to skip them (`--skip-empty`)."""
    from engine.data.features import dataset_features

    features = dataset_features(dataset, media, Path(args.features), config, skip_empty=args.skip_empty)
    if len(features) < len(dataset.videos):
        dataset = dataset.with_videos(features)
    return dataset, features


def protocol_header(dataset, group: str, n_folds: int) -> str:
    """'leave-one-identity-out over N identities' (or subjects), as the run reports print it."""
    if group == "identity":
        text = f"leave-one-identity-out over {n_folds} identities"
        if not dataset.has_identities():
            text += " (each subject its own identity)"
        return text
    text = f"leave-one-subject-out over {n_folds} subjects"
    if dataset.has_identities():
        text += f" (of {len(dataset.identities())} identities: the test faces are also in training)"
    return text


def protocol_record(group: str, folds) -> dict:
    """What a report records about its folds: the group and each fold's held-out subjects."""
    return {
        "protocol": f"leave-one-{group}-out",
        "group": group,
        "fold_subjects": {f.name: list(f.test_subjects) for f in folds},
    }


def fold_file_name(name: str) -> str:
    """A fold's name as a file name (identities are photo names: keep them to safe characters)."""
    import re

    safe = re.sub(r"[^\w.+-]", "_", name)
    return "_" + safe if safe.startswith(".") else safe


def cmd_broker(args: argparse.Namespace) -> int:
    """Handler of ``mespot broker``: forward until SIGINT / SIGTERM, then exit 0."""
    import threading

    from engine.live import stop_on_signals
    from stream.broker import DEFAULT_BROKER_ENDPOINT, DEFAULT_BROKER_SNAPSHOT, Broker, SpotterEndpoints

    spotters = [SpotterEndpoints.parse(text) for text in args.spotter]
    snapshot = DEFAULT_BROKER_SNAPSHOT if args.snapshot is None else args.snapshot
    broker = Broker(
        spotters,
        args.pub or DEFAULT_BROKER_ENDPOINT,
        None if snapshot == "none" else snapshot,
        request_timeout_s=args.request_timeout_s,
    )
    stop = threading.Event()
    stop_on_signals(stop)
    if not args.quiet:
        print(
            f"broker: {len(spotters)} spotter(s) -> publishing on {broker.endpoint}, "
            f"snapshots on {broker.snapshot_endpoint or 'none'}",
            file=sys.stderr,
            flush=True,
        )
    try:
        broker.run_forever(stop)
    finally:
        broker.close()
    if not args.quiet:
        print(
            f"broker: stopped; {broker.forwarded} messages forwarded from streams {sorted(broker.owner)}, "
            f"{broker.dropped_requests} requests dropped",
            file=sys.stderr,
        )
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    import json

    from engine.baseline import loso
    from engine.evaluate import write_megc_csv

    dataset, media = load_annotations(args)
    print(dataset.summary(), file=sys.stderr)
    dataset.folds(args.group)  # before extracting: fewer than two groups fails here
    dataset, features = annotated_features(args, dataset, media, feature_config(args))
    plan = dataset.folds(args.group)  # again: a skipped video may have taken a subject with it
    subject_of = {v.video: v.subject for v in dataset.videos}
    truths = {v.video: list(v.expressions) for v in dataset.videos}
    result = loso(plan, features, subject_of, truths)
    print(
        f"training-free baseline, {protocol_header(dataset, args.group, len(plan))} "
        f"({dataset.name}, {len(dataset.videos)} videos)"
    )
    print(result.report.table())
    if args.report:
        out = Path(args.report)
        out.mkdir(parents=True, exist_ok=True)
        (out / "baseline_report.json").write_text(
            json.dumps(
                {
                    "dataset": dataset.name,
                    "annotations": str(Path(args.annotations).resolve()),
                    "feature_config": feature_config(args).to_dict(),
                    **protocol_record(result.group, result.plan.values()),
                    "pooled": result.report.pooled.to_dict(),
                    "folds": {s: r.pooled.to_dict() for s, r in result.folds.items()},
                    "params_per_fold": result.params_table(),
                },
                indent=2,
            )
        )
        write_megc_csv(out / "baseline_predictions.csv", result.predictions)
        print(f"report and MEGC predictions in {out}", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    import numpy as np

    from engine.plots import plot_timeline
    from stream.extract_cache import FeatureCache, load_features

    config = feature_config(args)
    source = Path(args.input)
    npz = extract_cached(
        source,
        config,
        FeatureCache(Path(args.features), config),
        force=args.force,
        quiet=args.quiet,
        source_fps=args.source_fps,
    )
    arrays = load_features(npz)
    truths, fps, first = (), config.fps, 0
    if args.annotations:
        from engine.data import load_dataset

        dataset = load_dataset(args.dataset, args.annotations)
        key = args.video or source.stem
        try:
            record = dataset.video(key)
        except KeyError:
            print(f"error: {args.annotations} has no video {key!r} (give --video)", file=sys.stderr)
            return 2
        truths, fps, first = record.expressions, record.fps, record.first_frame
    if first:  # frame numbers relative to the video's first frame
        import dataclasses

        truths = [
            dataclasses.replace(t, onset=t.onset - first, offset=t.offset - first, apex=None) for t in truths
        ]
    t = len(arrays["valid"])
    out = plot_timeline(
        Path(args.out),
        start_s=np.arange(t) * config.snippet_seconds,
        snippet_s=config.snippet_seconds,
        motion=arrays["motion"],
        geometry=arrays["geometry"],
        valid=arrays["valid"].astype(bool),
        roi_set=config.roi_set,
        config=config,
        fps=fps,
        truths=truths,
        title=source.name,
    )
    print(f"timeline of {t} snippets -> {out}", file=sys.stderr)
    return 0


def _run_metadata(args: argparse.Namespace, dataset, **more) -> dict:
    """What a bundle records about how it was made (command, data, date)."""
    import datetime
    import shlex

    return {
        # the arguments `main` parsed (run from a shell, from python -m or from Python alike)
        "command": "mespot " + shlex.join(args.argv),
        "dataset": dataset.name,
        "annotations": str(Path(args.annotations).resolve()),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **more,
    }


def lookahead_option(args: argparse.Namespace, fconfig) -> int:
    """The network look-ahead in snippets that ``--lookahead-s`` asks for on `fconfig`'s hop.

    Raises:
        ConfigError: a value that is not a whole number of hops (``FeatureConfig.hop_s``), or a
            look-ahead for the non-causal network.
    """
    from engine.models import lookahead_snippets
    from stream.errors import ConfigError

    lookahead = lookahead_snippets(args.lookahead_s, fconfig.hop_s, "--lookahead-s")
    if lookahead and args.non_causal:
        raise ConfigError(
            f"--lookahead-s {args.lookahead_s:g}: a look-ahead applies to the causal network only "
            "(--non-causal already sees the whole video); drop one of the two options"
        )
    return lookahead


def cmd_train(args: argparse.Namespace) -> int:
    """Handler of ``mespot train``; under ``torchrun`` every process trains, rank 0 writes."""
    from engine import distributed

    group = distributed.current()
    try:
        return _train(args, group)
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace, group) -> int:
    import dataclasses
    import json

    from engine import distributed
    from engine.bundle import feature_dims, save_bundle
    from engine.evaluate import write_megc_csv
    from engine.methods import METHODS, build_method
    from engine.models import NetworkConfig
    from engine.train import TrainConfig, choose_operating_point, loso, predict, train

    fconfig = feature_config(args)
    lookahead = lookahead_option(args, fconfig)  # before reading any data: a bad value fails here
    main = group is None or group.is_main  # the process that prints and writes the run
    dataset, media = load_annotations(args)
    if main:
        print(dataset.summary(), file=sys.stderr)
    if args.loso:
        dataset.folds(args.group)  # before extracting: fewer than two groups fails here
    with distributed.main_first():  # rank 0 fills the feature cache, the others read it
        dataset, features = annotated_features(args, dataset, media, fconfig)
    network_name = args.network or METHOD_NETWORKS.get(args.method, "mcwes")
    # The method's own schedule where the command line is silent.
    schedule = dict(METHODS.get(args.method).training_defaults) if args.method in METHODS else {}
    for name in ("epochs", "batch_size", "lr"):
        if getattr(args, name) is not None:
            schedule[name] = getattr(args, name)
    proposals = None
    if args.proposal_mode is not None and args.method in METHODS:
        proposals = dataclasses.replace(METHODS.get(args.method).default_proposals(), mode=args.proposal_mode)
    config = TrainConfig(
        **schedule,
        proposals=proposals,
        augment=args.augment,
        seed=args.seed,
        method=args.method,
        method_options=parse_options(args.option, "--option"),
        network=NetworkConfig(
            network=network_name,
            # the inputs are what the feature configuration makes
            motion_dim=feature_dims(fconfig)[0],
            geometry_dim=feature_dims(fconfig)[1],
            causal=not args.non_causal,
            input_norm=not args.no_input_norm,
            neutral_s=args.neutral_s,
            lookahead=lookahead,
        ),
    )
    out = Path(args.out)
    label = f"{args.method} ({network_name}, {'non-causal' if args.non_causal else 'causal'})"
    if lookahead:
        label = f"{label[:-1]}, look-ahead {lookahead} snippets = {lookahead * fconfig.hop_s:.3g} s)"
    if args.loso:
        result = loso(dataset, features, config, group=args.group, folds=args.folds, progress=not args.quiet)
        if not main:
            return 0
        print(
            f"{label}, {protocol_header(dataset, args.group, len(result.folds))} ({dataset.name}), "
            f"{result.wall_s:.0f} s"
        )
        print(result.report.table())
        out.mkdir(parents=True, exist_ok=True)
        for held_out, network in result.networks.items():
            if not config.network.causal:
                continue  # a non-causal network cannot be windowed; its scores are in the report
            fold = result.plan[held_out]
            # One held-out subject is recorded as before (calibration reads held_out_subject).
            single = {"held_out_subject": fold.test_subjects[0]} if len(fold.test_subjects) == 1 else {}
            save_bundle(
                out / "folds" / f"{fold_file_name(held_out)}.mespot",
                network,
                config,
                fconfig,
                operating_point=result.operating_points[held_out],
                metadata=_run_metadata(
                    args,
                    dataset,
                    group=result.group,
                    held_out=held_out,
                    **single,
                    held_out_subjects=list(fold.test_subjects),
                    train_subjects=list(fold.train_subjects),
                    train_groups=list(fold.train_groups),
                    train_report=result.train_reports[held_out].to_dict(),
                    held_out_report=result.folds[held_out].to_dict(),
                ),
                overwrite=True,
            )
        (out / "loso_report.json").write_text(
            json.dumps(
                {
                    "format": "mespot-loso/1",
                    "label": label,
                    "dataset": dataset.name,
                    "annotations": str(Path(args.annotations).resolve()),
                    **protocol_record(result.group, result.plan.values()),
                    "feature_config": fconfig.to_dict(),
                    "train_config": config.to_dict(),
                    "report": result.report.to_dict(),
                    "pooled": result.report.pooled.to_dict(),
                    "folds": {s: r.pooled.to_dict() for s, r in result.folds.items()},
                    "operating_points": {s: op.to_dict() for s, op in result.operating_points.items()},
                    "train_f1": {s: r.overall.f1 for s, r in result.train_reports.items()},
                    "histories": result.histories,
                    "wall_s": result.wall_s,
                    "processes": distributed.describe(group),
                },
                indent=2,
            )
        )
        write_megc_csv(out / "loso_predictions.csv", result.predictions)
        print(f"report, MEGC predictions and per-fold bundles in {out}", file=sys.stderr)
        return 0
    videos = [(v, features[v.video]) for v in dataset.videos if v.video in features]
    network, history = train(videos, config, progress=not args.quiet)
    method = build_method(config.method, network, config.method_options)
    scores = {r.video: predict(network, method, f) for r, f in videos}
    point, report = choose_operating_point(videos, scores, config.proposals, method.operating_grid())
    if not main:
        return 0
    save_bundle(
        out,
        network,
        config,
        fconfig,
        operating_point=point,
        metadata=_run_metadata(
            args,
            dataset,
            train_subjects=sorted({v.subject for v, _ in videos}),
            train_report=report.to_dict(),
            history=history,
            processes=distributed.describe(group),
        ),
        overwrite=True,
    )
    print(f"{label} trained on {len(videos)} videos; on them, at the chosen operating point:")
    print(report.table())
    print(f"bundle -> {out}", file=sys.stderr)
    return 0


def retune_fold(bundle, network, dataset, features, trained_on, base, fields: list[str]):
    """A fold's operating point chosen again on its training subjects' videos (`--retune`).

    Args:
        bundle, network: the fold's bundle and its network.
        dataset, features: the dataset and its features (video id -> features).
        trained_on: the fold's training subjects (bundle metadata).
        base: the bundle's operating point (the fields not on the grid keep its values).
        fields: FIELD=V1,V2,... pairs (values JSON, else text).

    Returns:
        The chosen ProposalConfig.
    """
    import json

    from engine.train import choose_operating_point, predict
    from stream.errors import ConfigError

    method = bundle.method(network)
    grid = dict(method.operating_grid())
    for pair in fields:
        name, sep, raw = pair.partition("=")
        if not sep or not name or not raw:
            raise ConfigError(f"--retune {pair!r}: expected FIELD=V1,V2,...")
        values = []
        for item in raw.split(","):
            try:
                values.append(json.loads(item))
            except json.JSONDecodeError:
                values.append(item)
        grid[name] = tuple(values)
    train_videos = [
        (v, features[v.video]) for v in dataset.videos if v.subject in trained_on and v.video in features
    ]
    if not train_videos:
        raise ConfigError(f"{bundle.path}: --retune needs its training subjects' videos in the dataset")
    scores = {r.video: predict(network, method, f) for r, f in train_videos}
    point, report = choose_operating_point(train_videos, scores, base, grid)
    log.info(
        "%s: retuned on %d training videos, train F1 %.3f", bundle.path, len(train_videos), report.overall.f1
    )
    return point


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a bundle on a dataset, or re-evaluate a LOSO run from its per-fold bundles."""
    import json

    from engine.bundle import load_bundle
    from engine.evaluate import evaluate_folds, write_megc_csv
    from engine.train import spot_and_evaluate
    from stream.errors import ConfigError

    dataset, media = load_annotations(args)
    run = Path(args.run)
    if (run / "loso_report.json").is_file():
        folds_dir = run / "folds"
        paths = sorted(folds_dir.glob("*.mespot")) if folds_dir.is_dir() else []
        if not paths:
            raise ConfigError(f"{run}: a LOSO run without per-fold bundles in {folds_dir}")
        plan = [(load_bundle(p), None) for p in paths]
        # runs from before leave-one-identity-out held out single subjects
        group = json.loads((run / "loso_report.json").read_text()).get("group", "subject")
    elif (run / "bundle.json").is_file():
        plan = [(load_bundle(run), args.subjects)]
        group = None
    else:
        raise ConfigError(f"{run}: neither a bundle (bundle.json) nor a LOSO run (loso_report.json)")
    identity_of = {v.subject: v.identity for v in dataset.videos}
    reports, predictions, per_fold, shared_identities = {}, {}, {}, {}
    per_fold_points: dict[str, dict] = {}
    for bundle, subjects in plan:
        meta = bundle.metadata
        # a fold's bundle: its held-out subjects (every subject of the held-out identity)
        held_out_subjects = meta.get("held_out_subjects") or (
            [meta["held_out_subject"]] if meta.get("held_out_subject") is not None else None
        )
        held_out = meta.get("held_out", meta.get("held_out_subject"))
        wanted = set(held_out_subjects or subjects or [v.subject for v in dataset.videos])
        trained_on = set(meta.get("train_subjects") or [])
        if not held_out_subjects and wanted & trained_on:
            log.warning("evaluating on subjects the bundle was trained on: %s", sorted(wanted & trained_on))
        shared = sorted(
            {identity_of[s] for s in wanted - trained_on if s in identity_of}
            & {identity_of[s] for s in trained_on if s in identity_of}
        )
        if shared:
            log.warning(
                "%s: identities %s are both evaluated and in its training subjects (other variants of "
                "the same people): this is not a leave-one-identity-out evaluation",
                bundle.path,
                shared,
            )
        dataset, features = annotated_features(args, dataset, media, bundle.feature_config)
        videos = [
            (v, features[v.video]) for v in dataset.videos if v.subject in wanted and v.video in features
        ]
        if not videos:
            raise ConfigError(f"{bundle.path}: no video of subject(s) {sorted(wanted)} in {args.annotations}")
        network = bundle.network()
        point = bundle.proposal_config()
        if args.retune:
            if not held_out_subjects:
                raise ConfigError("--retune: only for a leave-one-out run folder (fold bundles)")
            point = retune_fold(bundle, network, dataset, features, trained_on, point, args.retune)
            per_fold_points[held_out] = point.to_dict()
        _, preds, report = spot_and_evaluate(network, bundle.method(network), point, videos)
        key = held_out if held_out is not None else "all"
        reports[key] = report
        predictions.update(preds)
        per_fold[key] = {"bundle": str(bundle.path), **report.pooled.to_dict()}
        if shared:
            shared_identities[key] = shared
    pooled = evaluate_folds(reports) if len(reports) > 1 else next(iter(reports.values()))
    held = f", {protocol_header(dataset, group, len(reports))}" if group is not None else ""
    print(f"{run}: {len(reports)} model(s) on {len(predictions)} videos ({dataset.name}{held})")
    print(pooled.table())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_report.json").write_text(
        json.dumps(
            {
                "run": str(run.resolve()),
                "dataset": dataset.name,
                "group": group,
                "report": pooled.to_dict(),
                "folds": per_fold,
                # identities evaluated although other variants of them were trained on
                "shared_identities": shared_identities,
                "retune": args.retune or [],
                "operating_points": per_fold_points,
            },
            indent=2,
        )
    )
    write_megc_csv(out / "predictions.csv", predictions)
    print(f"metrics and MEGC predictions in {out}", file=sys.stderr)
    return 0


# The network each method's paper uses, when --network is not given.
METHOD_NETWORKS = {"full": "mcwes", "mcwes": "mcwes", "pwes": "mcwes", "gim": "gim"}


def parse_options(pairs: list[str] | None, flag: str) -> dict[str, object]:
    """KEY=VALUE pairs -> dict; VALUE is read as JSON (numbers, true/false, lists), else a string.

    Raises:
        ConfigError: a pair without '='.
    """
    import json

    from stream.errors import ConfigError

    out: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def add_group_option(p: argparse.ArgumentParser) -> None:
    """--group: what each leave-one-out fold holds out."""
    p.add_argument(
        "--group",
        choices=("identity", "subject"),
        default="identity",
        help="fold grouping: identity (default, the main protocol: every subject of one real person "
        "held out together; the same as subject where each subject is its own person) or subject",
    )


def add_dataset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("annotations", help="annotation file (workbook or generic CSV)")
    p.add_argument("--dataset", default="csv", help="casme2, samm-lv, casme3 or csv (default)")
    p.add_argument("--root", help="dataset root with the frame folders (for the dataset layouts)")
    p.add_argument(
        "--media", help="folder of the videos named by video id (default: videos/ beside the annotation file)"
    )
    p.add_argument("--features", required=True, help="feature cache folder (as `mespot extract --out`)")
    p.add_argument(
        "--skip-empty",
        action="store_true",
        help="a video that yields no valid snippet is left out with a warning naming it "
        "(default: an error naming it, exit 1, before any training)",
    )


def add_feature_options(p: argparse.ArgumentParser) -> None:
    """Options that set the feature configuration (shared by every command that extracts).

    One option per `FeatureConfig` field (``--hop-s`` for ``hop_s``), its default and type read
    from the dataclass, so a new field needs no new option here.
    """
    from dataclasses import fields

    from stream.config import FeatureConfig
    from stream.flow import FLOWS

    defaults = FeatureConfig()
    for f in fields(FeatureConfig):
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        shown = f"{value:.6g}" if isinstance(value, float) else value
        kwargs: dict = {"default": None, "help": f"feature configuration {f.name} (default {shown})"}
        if isinstance(value, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(value, tuple):
            kwargs.update(type=type(value[0]) if value else float, nargs="+", metavar=f.name.upper())
        else:
            kwargs["type"] = type(value)
        if f.name == "flow":  # the config refuses an unknown name with the same list
            kwargs["help"] += f"; one of {', '.join(FLOWS.names())}"
        p.add_argument(flag, **kwargs)
    p.add_argument(
        "--source-fps",
        type=float,
        default=None,
        help="frame rate of frame folders (default 30; SAMM-LV is 200)",
    )
    p.add_argument("--force", action="store_true", help="extract again even when cached")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mespot", description="Facial micro/macro-expression spotting.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

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

    from stream.synth.cli import add_synth_parser

    add_synth_parser(sub)

    bl = sub.add_parser(
        "baseline",
        help="training-free region-motion spotting, leave-one-identity-out",
        description="The training-free baseline (engine/baseline.py): its parameters are "
        "chosen on each fold's training identities, then the held-out identity (every subject of "
        "that person) is spotted.",
    )
    add_dataset_options(bl)
    add_group_option(bl)
    bl.add_argument("--report", help="folder for the JSON report and the MEGC predictions CSV")
    add_feature_options(bl)
    bl.set_defaults(func=cmd_baseline)

    tr = sub.add_parser(
        "train",
        help="train a spotting network (leave-one-identity-out with --loso)",
        description="Train a spotting network with a supervision method; with --loso, train one model "
        "per held-out identity (every subject of one person; --group subject: one subject), choose "
        "its operating point on the training identities, and report the pooled metrics.",
    )
    add_dataset_options(tr)
    tr.add_argument(
        "--method",
        default="full",
        help="supervision: mcwes (video-level labels), pwes (one random frame per expression), "
        "gim (one frame, Gaussian soft labels) or full (every frame, the upper bound)",
    )
    tr.add_argument(
        "--option",
        "-O",
        action="append",
        metavar="KEY=VALUE",
        help="a method option (repeatable), e.g. -O mplg=false; see the method's config",
    )
    tr.add_argument(
        "--network", help="network: mcwes (CSCM) or gim (default: the one the method's paper uses)"
    )
    tr.add_argument("--non-causal", action="store_true", help="the non-causal twin (papers' global forms)")
    tr.add_argument(
        "--lookahead-s",
        type=float,
        default=0.0,
        metavar="S",
        help="let the causal network see S seconds past the snippet it scores, a whole number of "
        "snippet hops (--hop-s); live scores and events come S seconds later (default 0: strictly causal)",
    )
    tr.add_argument(
        "--neutral-s",
        type=float,
        help="normalise each video / stream by its first S seconds of resting face (calibration.baseline)",
    )
    tr.add_argument(
        "--no-input-norm", action="store_true", help="feed raw features (no training-set standardisation)"
    )
    tr.add_argument(
        "--augment",
        type=float,
        default=0.0,
        metavar="STRENGTH",
        help="feature-space augmentation for new people in [0, 1]: motion gain, face-shape offset, "
        "noise (engine.train.augment_batch; default 0, off)",
    )
    tr.add_argument(
        "--proposal-mode",
        choices=("top", "threshold"),
        help="multi-top (MC-WES) or multi-threshold (GIM) proposals (default: the method's)",
    )
    tr.add_argument(
        "--loso", action="store_true", help="leave-one-out evaluation (leave-one-identity-out; see --group)"
    )
    add_group_option(tr)
    tr.add_argument("--folds", type=int, help="only the first N folds (quick runs)")
    tr.add_argument("--epochs", type=int, help="passes over the training data (default: the method's)")
    tr.add_argument("--batch-size", type=int, help="windows or whole videos per step (default: the method's)")
    tr.add_argument("--lr", type=float, help="Adam learning rate (default: the method's)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument(
        "--out",
        required=True,
        help="model bundle folder (e.g. model.mespot), or with --loso the report folder "
        "(per-fold bundles in folds/)",
    )
    add_feature_options(tr)
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser(
        "eval",
        help="evaluate a model bundle, or re-evaluate a LOSO run from its per-fold bundles",
        description="Score a dataset with a bundle at its stored operating point (or, for a LOSO "
        "run folder, each fold's bundle on its held-out identity or subject), and write the per-fold "
        "and pooled metrics and the MEGC predictions. Features are extracted with the bundle's own feature "
        "configuration.",
    )
    ev.add_argument("run", help="a bundle folder (bundle.json) or a `mespot train --loso` output folder")
    add_dataset_options(ev)
    ev.add_argument("--subjects", nargs="+", help="for a bundle: only these subjects (default: all)")
    ev.add_argument(
        "--retune",
        action="append",
        metavar="FIELD=V1,V2,...",
        help="leave-one-out runs: choose each fold's operating point again on its own training "
        "subjects, over the method's grid with this proposal field's values (JSON each, else "
        "text) added or replaced; repeat for several fields. The held-out subjects never reach "
        "the choice.",
    )
    ev.add_argument("--out", required=True, help="folder for eval_report.json and predictions.csv")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_eval)

    from calibration.operating_point import add_calibrate_parser
    from calibration.quantize import add_quantize_parser
    from engine.export import add_export_parser
    from engine.live import add_live_parser
    from stream.listen import add_listen_parser

    add_export_parser(sub)
    add_calibrate_parser(sub)
    add_quantize_parser(sub)
    add_live_parser(sub)
    add_listen_parser(sub)

    br = sub.add_parser(
        "broker",
        help="one endpoint for many spotters: forward their events and snapshots",
        description="Connect to several spotters' PUB and snapshot endpoints and offer one PUB "
        "and one snapshot endpoint in their place (docs/events.md, 'Many spotters: the broker'). "
        "Runs until Ctrl-C or SIGTERM.",
    )
    br.add_argument(
        "--spotter",
        action="append",
        required=True,
        metavar="PUB[,SNAPSHOT]",
        help="a spotter's endpoints, e.g. tcp://10.0.0.5:5556,tcp://10.0.0.5:5557 (repeat per spotter)",
    )
    br.add_argument("--pub", default=None, help="the broker's PUB endpoint (default tcp://127.0.0.1:5656)")
    br.add_argument(
        "--snapshot",
        default=None,
        help="the broker's snapshot endpoint, or 'none' (default tcp://127.0.0.1:5657)",
    )
    br.add_argument(
        "--request-timeout-s",
        type=float,
        default=5.0,
        help="how long a spotter may take to answer (default 5)",
    )
    br.add_argument("--quiet", action="store_true", help="print nothing but errors")
    br.set_defaults(func=cmd_broker)

    pl = sub.add_parser(
        "plot",
        help="per-snippet facial motion timeline of a video (PNG)",
        description="Extract (or reuse) a video's snippet features and draw, per face part, "
        "the strongest region's motion and texture change over time; with --annotations, "
        "the ground-truth intervals are shaded.",
    )
    pl.add_argument("input", help="video file or frame folder")
    pl.add_argument("--out", required=True, help="PNG to write")
    pl.add_argument(
        "--annotations", help="annotation file holding this video (generic CSV or a dataset workbook)"
    )
    pl.add_argument("--dataset", default="csv", help="layout of --annotations (default csv)")
    pl.add_argument("--video", help="video id in the annotations (default: the input's file name stem)")
    pl.add_argument("--features", default="out/features", help="feature cache folder (default out/features)")
    add_feature_options(pl)
    pl.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    from engine.startup import live_journal_of, startup_signals

    argv = sys.argv[1:] if argv is None else list(argv)
    # The parser imports every command (torch among them): a signal meanwhile exits quietly, and
    # `mespot live` notes it in its journal. Each command installs its own handlers after.
    with startup_signals(lambda: live_journal_of(argv) if "live" in argv else None):
        args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in the bundles a command writes
    from stream.native_logs import quiet_native_logs

    quiet_native_logs(args.verbose)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except MespotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
