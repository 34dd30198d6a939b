"""Options and helpers every command shares: inputs, datasets, feature configurations, method options."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

LIST_SUFFIXES = {".txt", ".lst", ".list", ".csv"}

# The network each method's paper uses, when --network is not given.
METHOD_NETWORKS = {"full": "mcwes", "mcwes": "mcwes", "pwes": "mcwes", "gim": "gim"}


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
    """Files and frame folders to extract, from paths, dataset lists and annotation files.

    A dataset list is a text file with one path per line (relative paths are taken from the
    list's own folder; blank lines and lines starting with # are skipped; for a .csv the first
    column is the path and a header row naming 'video' or 'path' is skipped). A .csv whose header
    also names 'onset' and 'offset' is a mespot annotation file (`mespot synth` writes them): its
    videos are looked up in the ``videos`` folder beside it, as `mespot train` finds them, once
    each. A path listed twice is extracted once.

    Raises:
        SourceCorrupt: a list file that is not text.
        SourceNotFound: an annotation file's video has no file or frame folder.
    """
    out: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.suffix.lower() in LIST_SUFFIXES and p.is_file():
            lines = read_list_file(p).splitlines()
            header = {c.strip().lower() for c in lines[0].split(",")} if lines else set()
            if p.suffix.lower() == ".csv" and {"video", "onset", "offset"} <= header:
                out.extend(annotated_media(p))
                continue
            for n, line in enumerate(lines, 1):
                item = line.split(",")[0].strip() if p.suffix.lower() == ".csv" else line.strip()
                if not item or item.startswith("#") or (n == 1 and item.lower() in {"video", "path"}):
                    continue
                q = Path(item)
                out.append(q if q.is_absolute() else p.parent / q)
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def annotated_media(annotations: Path) -> list[Path]:
    """The video file or frame folder of every video of a mespot annotation file, in its order."""
    from engine.data import load_dataset
    from engine.data.features import media_path

    dataset = load_dataset("csv", annotations)
    media = annotations.resolve().parent / "videos"
    return [media_path(record, media) for record in dataset.videos]


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


def run_metadata(args: argparse.Namespace, dataset, **more) -> dict:
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
