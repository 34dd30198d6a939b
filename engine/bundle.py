"""Model bundles: a trained scorer with everything needed to run it, versioned and self-describing.

A bundle is a folder, by convention ``NAME.mespot/`` (DESIGN invariant 4)::

    NAME.mespot/
        bundle.json          the manifest (below); the only file that is not hashed
        weights.pt           plain state dict of tensors, read with torch.load(weights_only=True);
                             an ensemble's holds every member (keys members.<i>.<name>)
        scorer.onnx          the exported window scorer (``engine.export``), absent until exported
        scorer.fp16.onnx     optional: the half-precision graph (TensorRT FP16)
        scorer.fp16.engine   optional: a serialized TensorRT engine (GPU- and version-specific)

``bundle.json`` (format ``"mespot-bundle/1"``)::

    {
      "format": "mespot-bundle/1",
      "created": "2025-01-01T12:00:00+00:00",      UTC, ISO 8601
      "mespot_version": "0.1.0", "torch_version": "2.13.0+cpu",
      "network": {...},                            NetworkConfig.to_dict()
      "method": {"name": "full", "options": {...}},
      "train_config": {...},                       TrainConfig.to_dict() (its network equals "network")
      "features": {"config": {...}, "digest": "0123456789abcdef"},   FeatureConfig and its digest
      "classes": ["me", "mae"],                    column order of the class scores
      "operating_point": {...} | null,             ProposalConfig.to_dict(), chosen on training data
      "metadata": {...},                           free-form JSON: dataset, subjects, command, date,
                                                   metrics, ... (whatever the trainer recorded)
      "receptive_field": 42 | null,                snippets of history a score depends on (null:
                                                   non-causal network, which cannot be windowed)
      "lookahead_s": 0.0,                          the network's look-ahead L in seconds (its
                                                   network.lookahead snippets x the hop); optional,
                                                   absent in older bundles (read as 0)
      "window": 64 | null,                         W, snippets the live scorer feeds per call
      "files": {"weights.pt": {"role": "weights", "sha256": "...", "bytes": 12345},
                "scorer.onnx": {"role": "scorer", "format": "onnx", "precision": "fp32",
                                "window": 64, "sha256": "...", "bytes": 67890, ...}}
    }

Every file other than ``bundle.json`` is listed under ``files`` with its SHA-256; `load_bundle`
verifies them all, so a damaged, truncated or swapped file is an error naming the file rather than
silently wrong scores. No pickled object is written or read (DESIGN invariant 7): the weights are a
plain tensor state dict loaded with ``weights_only=True`` and everything else is JSON or ONNX.

The scoring window W defaults to the smallest power of two >= the receptive field
(`default_window`): any W >= the receptive field gives the whole-sequence forward's scores
exactly, a power of two keeps the TensorRT profile and batched tensors tidy, and the headroom is at
most 2x the necessary compute. With a look-ahead of L snippets the live scorer reads row W - 1 - L
of each window (the newest snippet whose look-ahead is complete), so W must also be >= L + 1.

Look-ahead. A network may see L snippets past the one it scores (``NetworkConfig.lookahead``; 0:
strictly causal). It travels with the bundle (``network.lookahead`` in snippets, ``lookahead_s``
in seconds, `Bundle.lookahead` / `Bundle.lookahead_s`), and every score, hence every event, is
available L snippets later than with a strictly causal network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.methods import METHODS
from engine.models import ACTION_CLASSES, NetworkConfig
from engine.proposals import ProposalConfig
from engine.train_config import TrainConfig
from stream.config import FeatureConfig
from stream.errors import ConfigError, MespotError

if TYPE_CHECKING:
    import torch

    from engine.methods import Method
    from engine.models import NetworkEnsemble, SpottingNetwork

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "mespot-bundle/1"
BUNDLE_SUFFIX = ".mespot"
MANIFEST = "bundle.json"
WEIGHTS = "weights.pt"
CLASSES: tuple[str, ...] = ACTION_CLASSES  # ("me", "mae"): the column order of class scores

_REQUIRED_KEYS = (
    "network",
    "method",
    "train_config",
    "features",
    "classes",
    "receptive_field",
    "window",
    "files",
)
_HASH_CHUNK = 1 << 20


class BundleError(MespotError):
    """A bundle cannot be read or used: names the file and the problem.

    Attributes:
        path: the file (or bundle folder) at fault.
        problem: what is wrong with it.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class FeatureMismatchError(BundleError):
    """The running pipeline's feature configuration is not the one the bundle was trained on.

    Attributes:
        fields: name -> (the bundle's value, the pipeline's value) of every differing field.
    """

    def __init__(self, path: str | Path, fields: Mapping[str, tuple[Any, Any]]) -> None:
        self.fields = dict(fields)
        diffs = ", ".join(f"{k}: bundle {b!r} != pipeline {p!r}" for k, (b, p) in self.fields.items())
        super().__init__(
            path,
            f"feature configuration does not match the running pipeline ({diffs}); run the pipeline "
            "with the bundle's feature configuration (Bundle.feature_config) or use a bundle trained "
            "on these features",
        )


def default_window(receptive_field: int, lookahead: int = 0) -> int:
    """The default scoring window: the smallest power of two >= the receptive field and > the
    look-ahead (at least 2).

    Args:
        receptive_field: snippets of history one score depends on (>= 1).
        lookahead: L, snippets past the scored one a score depends on (>= 0).
    """
    if isinstance(receptive_field, bool) or not isinstance(receptive_field, int) or receptive_field < 1:
        raise ConfigError(f"receptive_field={receptive_field!r}: must be an integer >= 1")
    need = min_window(receptive_field, lookahead)
    return max(2, 1 << (need - 1).bit_length())


def min_window(receptive_field: int, lookahead: int = 0) -> int:
    """The shortest exact scoring window: max(receptive_field, lookahead + 1) snippets.

    The live scorer reads the score of the newest snippet whose look-ahead is complete, row
    W - 1 - L of a window of W snippets: that row must exist (W >= L + 1), and the network body's
    output at the newest snippet, which that row holds, sees receptive_field snippets (W >=
    receptive_field).
    """
    if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
        raise ConfigError(f"lookahead={lookahead!r}: must be an integer >= 0")
    return max(receptive_field, lookahead + 1)


def check_window(
    window: object, receptive_field: int | None, what: str = "window", lookahead: int = 0
) -> int:
    """Validate a scoring window W against a network's receptive field and look-ahead.

    Raises:
        ConfigError: the network is non-causal (no finite history), or W is not an integer in
            [max(receptive_field, lookahead + 1), 65536].
    """
    if receptive_field is None:
        raise ConfigError(
            f"{what}: the network is non-causal (it sees the whole sequence), so it cannot score a "
            "sliding window; train and bundle the causal network (NetworkConfig(causal=True))"
        )
    lo = min_window(receptive_field, lookahead)
    if isinstance(window, bool) or not isinstance(window, int) or not lo <= window <= 65536:
        ahead = f" and more than its look-ahead of {lookahead} snippets" if lookahead else ""
        raise ConfigError(
            f"{what}={window!r}: must be an integer in [{lo}, 65536] (at least the "
            f"network's receptive field of {receptive_field} snippets{ahead}, or live scores would "
            "differ from the whole-sequence forward)"
        )
    return window


def lookahead_seconds(lookahead: int, feature_config: FeatureConfig) -> float:
    """A look-ahead of `lookahead` snippets in seconds on the feature configuration's grid."""
    return lookahead * feature_config.snippet_seconds


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def feature_dims(config: FeatureConfig) -> tuple[int, int]:
    """(motion, geometry) snippet feature widths (3 * Dm, 3 * Dg) the feature configuration makes."""
    from stream.features import ROI_SETS, feature_names

    dm, dg = (3 * len(names) for names in feature_names(ROI_SETS.build(config.roi_set), config))
    return dm, dg


def _json_default(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, then rename it over `path`: readers see the
    old file or the whole new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the file private to its writer
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write the manifest atomically (`write_atomic`)."""
    text = json.dumps(data, indent=2, default=_json_default, allow_nan=False)
    write_atomic(path, (text + "\n").encode())


def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("mespot")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _check_file_name(folder: Path, name: object) -> str:
    """A manifest file name must be a plain name inside the bundle (no folders, no '..')."""
    if not isinstance(name, str) or not name or name in {".", "..", MANIFEST} or Path(name).name != name:
        raise BundleError(folder / MANIFEST, f"files: {name!r} is not a plain file name inside the bundle")
    return name


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified model bundle (see the module docstring for the layout).

    Attributes:
        path: the bundle folder.
        train_config: the training configuration (its ``network`` is the network configuration).
        feature_config: the feature configuration the network was trained on.
        operating_point: the proposal configuration chosen for this model, or None when the
            bundle has none (`proposal_config` then falls back to the method's default).
        metadata: free-form training metadata (dataset, subjects, command, date, metrics, ...).
        receptive_field: snippets of history one score depends on; None for a non-causal network.
            A score at s depends on snippets ``s - receptive_field + 1 .. s + lookahead``.
        window: the scoring window W in snippets (None for a non-causal network).
        classes: class-score column order, ("me", "mae").
        files: file name -> its manifest entry (role, sha256, bytes, export details).
        created: when the bundle was saved (UTC, ISO 8601).
        manifest: the whole bundle.json as read.
    """

    path: Path
    train_config: TrainConfig
    feature_config: FeatureConfig
    operating_point: ProposalConfig | None
    metadata: Mapping[str, Any]
    receptive_field: int | None
    window: int | None
    classes: tuple[str, ...] = CLASSES
    files: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    created: str = ""
    manifest: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def network_config(self) -> NetworkConfig:
        """The network configuration."""
        return self.train_config.network

    @property
    def method_name(self) -> str:
        """Registry name of the method whose scores the bundle produces."""
        return self.train_config.method

    @property
    def method_options(self) -> Mapping[str, Any]:
        """The method's own configuration fields."""
        return self.train_config.method_options

    @property
    def feature_digest(self) -> str:
        """`FeatureConfig.digest` of the bundle's feature configuration."""
        return self.feature_config.digest()

    @property
    def lookahead(self) -> int:
        """L, snippets past the scored one each score depends on (0: strictly causal)."""
        return self.network_config.lookahead

    @property
    def lookahead_s(self) -> float:
        """The look-ahead in seconds: how much later than a strictly causal network's each score,
        hence each event, can be published (L x the feature configuration's hop)."""
        return lookahead_seconds(self.lookahead, self.feature_config)

    @property
    def causal(self) -> bool:
        """Whether the network is causal (only causal bundles can be windowed and exported)."""
        return self.network_config.causal

    def file(self, name: str) -> Path:
        """Path of a file the manifest lists.

        Raises:
            BundleError: the manifest does not list it.
        """
        if name not in self.files:
            raise BundleError(self.path, f"has no file {name!r} (it holds {sorted(self.files)})")
        return self.path / name

    def artifacts(self, fmt: str, precision: str | None = None) -> list[tuple[str, Mapping[str, Any]]]:
        """The exported files of a format ("onnx", "tensorrt"), newest first.

        Args:
            fmt: the export format.
            precision: only this precision ("fp32", "fp16", "int8"); None: any.

        Returns:
            (file name, manifest entry) pairs.
        """
        found = [
            (name, info)
            for name, info in self.files.items()
            if info.get("format") == fmt and (precision is None or info.get("precision") == precision)
        ]
        return sorted(found, key=lambda item: str(item[1].get("created", "")), reverse=True)

    def network(self) -> SpottingNetwork | NetworkEnsemble:
        """Build the network (or the ensemble of ``train_config.ensemble`` networks, all in the one
        weights file) and load the bundle's weights; returned in eval mode.

        Raises:
            BundleError: the weights file is not a plain tensor state dict or does not fit the
                network configuration.
        """
        import torch  # here, not at the top: reading a bundle for ONNX or TensorRT needs no torch

        from engine.models import build_ensemble

        path = self.file(WEIGHTS)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unpickling refusal or damage is reported alike
            raise BundleError(
                path, f"not a plain tensor state dict (loaded with weights_only=True): {exc}"
            ) from exc
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise BundleError(path, "not a state dict of tensors")
        network = build_ensemble(self.network_config, self.train_config.ensemble)
        try:
            network.load_state_dict(state)
        except RuntimeError as exc:
            raise BundleError(path, f"weights do not fit the network configuration: {exc}") from exc
        network.eval()
        return network

    def method(self, network: torch.nn.Module | None = None) -> Method:
        """The method (for `Method.score_tensors`), bound to `network` or to a freshly built one."""
        from engine.methods import build_method

        net = network if network is not None else self.network()
        return build_method(self.method_name, net, self.method_options)

    def proposal_config(self) -> ProposalConfig:
        """The operating point, or, when the bundle has none, the method's `default_proposals`.

        The default is logged as a warning: its thresholds were not tuned for this model.
        """
        if self.operating_point is not None:
            return self.operating_point
        log.warning(
            "bundle %s has no operating point; using method %r's default proposal configuration, "
            "which was not tuned for this model",
            self.path,
            self.method_name,
        )
        return METHODS.get(self.method_name).default_proposals()

    def check_features(self, feature_config: FeatureConfig) -> None:
        """Refuse a running pipeline whose feature configuration differs from the bundle's.

        Args:
            feature_config: the pipeline's feature configuration.

        Raises:
            FeatureMismatchError: naming every differing field with both values.
        """
        if not isinstance(feature_config, FeatureConfig):
            raise ConfigError(
                f"check_features: expected a FeatureConfig, got {type(feature_config).__name__}"
            )
        ours, theirs = self.feature_config.to_dict(), feature_config.to_dict()
        keys = sorted(set(ours) | set(theirs))
        diffs = {k: (ours.get(k), theirs.get(k)) for k in keys if ours.get(k) != theirs.get(k)}
        if diffs:
            raise FeatureMismatchError(self.path, diffs)


def save_bundle(
    path: str | Path,
    network: SpottingNetwork | NetworkEnsemble,
    train_config: TrainConfig,
    feature_config: FeatureConfig,
    *,
    operating_point: ProposalConfig | None = None,
    metadata: Mapping[str, Any] | None = None,
    window: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bundle folder: ``weights.pt`` and ``bundle.json`` (export adds the scorer files).

    Args:
        path: the bundle folder (created; by convention ending in ``.mespot``).
        network: the trained network, or ensemble of ``train_config.ensemble`` networks (its
            configuration must equal ``train_config.network``).
        train_config: its training configuration (method, method options, ...).
        feature_config: the feature configuration it was trained on.
        operating_point: the proposal configuration chosen on training data; None: none (users
            get the method's default with a warning).
        metadata: free-form JSON-ready training metadata, e.g. dataset, subjects, command, date,
            metrics (objects with ``to_dict``, numpy scalars and paths are converted).
        window: scoring window W; None: `default_window` of the receptive field. Must be None for
            a non-causal network.
        overwrite: replace a bundle already in the folder (its listed files are removed first).

    Returns:
        The bundle folder.

    Raises:
        ConfigError: the network does not match the configurations, the window is too short,
            or the metadata is not JSON serialisable.
        BundleError: the folder already holds a bundle and overwrite is False.
    """
    folder = Path(path)
    import torch

    from engine.models import NetworkEnsemble, SpottingNetwork

    if not isinstance(network, SpottingNetwork | NetworkEnsemble):
        raise ConfigError(
            f"save_bundle: expected a SpottingNetwork or NetworkEnsemble, got {type(network).__name__}"
        )
    members = len(network.members) if isinstance(network, NetworkEnsemble) else 1
    if members != train_config.ensemble:
        raise ConfigError(
            f"save_bundle: {members} network(s), but train_config.ensemble={train_config.ensemble}"
        )
    if network.config != train_config.network:
        raise ConfigError(
            f"save_bundle: the network's configuration {network.config} differs from "
            f"train_config.network {train_config.network}"
        )
    dm, dg = feature_dims(feature_config)
    nc = train_config.network
    if (nc.motion_dim, nc.geometry_dim) != (dm, dg):
        raise ConfigError(
            f"save_bundle: the network takes motion_dim={nc.motion_dim}, geometry_dim={nc.geometry_dim}, "
            f"the feature configuration makes {dm} + {dg} (roi_set={feature_config.roi_set!r})"
        )
    if operating_point is not None and not isinstance(operating_point, ProposalConfig):
        raise ConfigError(
            "save_bundle: operating_point must be a ProposalConfig or None, "
            f"got {type(operating_point).__name__}"
        )
    rf, ahead = network.receptive_field, nc.lookahead
    if rf is None:
        if window is not None:
            raise ConfigError(f"save_bundle: window={window!r} given for a non-causal network (it has none)")
    else:
        window = default_window(rf, ahead) if window is None else check_window(window, rf, lookahead=ahead)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "created": created,
        "mespot_version": _package_version(),
        "torch_version": torch.__version__,
        "network": nc.to_dict(),
        "method": {"name": train_config.method, "options": dict(train_config.method_options)},
        "train_config": train_config.to_dict(),
        "features": {"config": feature_config.to_dict(), "digest": feature_config.digest()},
        "classes": list(CLASSES),
        "operating_point": None if operating_point is None else operating_point.to_dict(),
        "metadata": dict(metadata or {}),
        "receptive_field": rf,
        "lookahead_s": lookahead_seconds(ahead, feature_config),
        "window": window,
        "files": {},
    }
    try:  # fail on unserialisable metadata before touching the folder
        json.dumps(manifest, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"save_bundle: metadata is not JSON serialisable: {exc}") from exc

    if (folder / MANIFEST).exists():
        if not overwrite:
            raise BundleError(folder, "already holds a bundle (pass overwrite=True to replace it)")
        try:
            old = json.loads((folder / MANIFEST).read_text())
            for name in old.get("files", {}) if isinstance(old, dict) else ():
                (folder / _check_file_name(folder, name)).unlink(missing_ok=True)
        except (OSError, ValueError, BundleError) as exc:
            log.warning("%s: could not remove the old bundle's files: %s", folder, exc)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in network.state_dict().items()}
    torch.save(state, folder / WEIGHTS)
    manifest["files"][WEIGHTS] = {
        "role": "weights",
        "sha256": sha256_file(folder / WEIGHTS),
        "bytes": (folder / WEIGHTS).stat().st_size,
    }
    _write_json_atomic(folder / MANIFEST, manifest)
    return folder


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not folder.exists():
        raise BundleError(folder, "no such bundle folder")
    if not folder.is_dir():
        raise BundleError(folder, f"not a bundle folder (a bundle is a folder holding {MANIFEST})")
    if not path.is_file():
        raise BundleError(path, "missing: the folder is not a mespot bundle")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(path, f"not readable JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleError(path, "not a JSON object")
    fmt = manifest.get("format")
    if fmt != BUNDLE_FORMAT:
        family, _, version = str(fmt).partition("/")
        hint = (
            "a newer mespot wrote it; upgrade mespot"
            if family == "mespot-bundle" and version.isdigit() and int(version) > 1
            else "not a mespot bundle manifest"
        )
        raise BundleError(
            path, f"unknown bundle format {fmt!r}: this mespot reads {BUNDLE_FORMAT!r} ({hint})"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(path, f"missing keys {missing}")
    return manifest


def load_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle folder (or its ``bundle.json``).

    Checks the format version, that every listed file exists and has its recorded SHA-256, that
    the configurations are valid and agree with each other, and that the feature digest matches
    the feature configuration. The weights themselves are read by `Bundle.network`.

    Args:
        path: the bundle folder, or the path of its ``bundle.json``.

    Returns:
        The verified `Bundle`.

    Raises:
        BundleError: naming the file at fault and the problem (missing, damaged, unknown format
            version, inconsistent configuration).
    """
    folder = Path(path)
    if folder.name == MANIFEST and folder.is_file():
        folder = folder.parent
    return _load(folder)


def _load(folder: Path, skip: frozenset[str] = frozenset()) -> Bundle:
    """`load_bundle` of a folder, not hashing the files named in `skip` (being replaced)."""
    manifest = _read_manifest(folder)
    mpath = folder / MANIFEST

    files = manifest["files"]
    if not isinstance(files, dict) or WEIGHTS not in files:
        raise BundleError(mpath, f"files: must list {WEIGHTS!r} with its sha256")
    for name, info in files.items():
        _check_file_name(folder, name)
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
            raise BundleError(mpath, f"files: the entry of {name!r} has no sha256")
        fpath = folder / name
        if name in skip:
            continue
        if not fpath.is_file():
            raise BundleError(fpath, "missing (bundle.json lists it)")
        actual = sha256_file(fpath)
        if actual != info["sha256"]:
            raise BundleError(
                fpath,
                f"damaged or replaced: its SHA-256 is {actual[:16]}..., bundle.json records "
                f"{info['sha256'][:16]}...",
            )

    try:
        train_config = TrainConfig.from_dict(manifest["train_config"])
        network_config = NetworkConfig.from_dict(manifest["network"])
        features = manifest["features"]
        feature_config = FeatureConfig.from_dict(features["config"])
        op = manifest.get("operating_point")
        operating_point = None if op is None else ProposalConfig.from_dict(op)
    except (ConfigError, KeyError, TypeError) as exc:
        raise BundleError(mpath, f"invalid configuration: {exc}") from exc
    if operating_point is not None:
        # The network's scores are probabilities: a level outside [0, 1] passes every snippet or none.
        outside = [t for t in operating_point.thresholds if not 0.0 <= t <= 1.0]
        if outside:
            raise BundleError(
                mpath, f"operating_point.thresholds: {outside} outside [0, 1] (the scores are probabilities)"
            )
    if network_config != train_config.network:
        raise BundleError(mpath, "network and train_config.network disagree")
    method = manifest["method"]
    if not isinstance(method, dict) or method.get("name") != train_config.method:
        raise BundleError(
            mpath, f"method {method!r} disagrees with train_config.method {train_config.method!r}"
        )
    if features.get("digest") != feature_config.digest():
        raise BundleError(
            mpath,
            f"feature digest {features.get('digest')!r} does not match its feature configuration "
            f"({feature_config.digest()!r}); the manifest was edited or written by an incompatible mespot",
        )
    raw_classes = manifest["classes"]
    if not isinstance(raw_classes, list) or not all(isinstance(c, str) for c in raw_classes):
        raise BundleError(mpath, f"classes={raw_classes!r}: must be a list of class names, {list(CLASSES)}")
    unknown = [c for c in raw_classes if c not in CLASSES]
    if unknown:
        raise BundleError(mpath, f"classes: unknown names {unknown}; this mespot knows {list(CLASSES)}")
    classes = tuple(raw_classes)
    if classes != CLASSES:
        raise BundleError(mpath, f"classes {list(classes)} differ from this mespot's {list(CLASSES)}")
    rf, window = manifest["receptive_field"], manifest["window"]
    if network_config.causal:
        if isinstance(rf, bool) or not isinstance(rf, int) or rf < 1:
            raise BundleError(mpath, f"receptive_field={rf!r}: must be an integer >= 1 for a causal network")
        try:
            check_window(window, rf, lookahead=network_config.lookahead)
        except ConfigError as exc:
            raise BundleError(mpath, str(exc)) from exc
    elif rf is not None or window is not None:
        raise BundleError(mpath, "a non-causal network has no receptive_field or window (must be null)")
    ahead_s = manifest.get("lookahead_s")  # absent in bundles older than the look-ahead
    want_s = lookahead_seconds(network_config.lookahead, feature_config)
    if ahead_s is not None and (
        isinstance(ahead_s, bool) or not isinstance(ahead_s, int | float) or abs(ahead_s - want_s) > 1e-6
    ):
        raise BundleError(
            mpath,
            f"lookahead_s={ahead_s!r} disagrees with network.lookahead={network_config.lookahead} snippets "
            f"of {feature_config.snippet_seconds:.6g} s ({want_s:.6g} s)",
        )
    metadata = manifest.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BundleError(mpath, "metadata: must be a JSON object")
    return Bundle(
        path=folder,
        train_config=train_config,
        feature_config=feature_config,
        operating_point=operating_point,
        metadata=MappingProxyType(metadata),
        receptive_field=rf,
        window=window,
        classes=classes,
        files=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in files.items()}),
        created=str(manifest.get("created", "")),
        manifest=MappingProxyType(manifest),
    )


def add_file(path: str | Path, name: str, entry: Mapping[str, Any]) -> Bundle:
    """List a file already written into a bundle folder, with its SHA-256, in ``bundle.json``.

    Used by ``engine.export`` for the scorer graphs and engines. The rest of the bundle is verified
    first (as `load_bundle` does), so a damaged bundle is never re-signed; a file of the same name
    listed before (an earlier export being replaced) is not checked.

    Args:
        path: the bundle folder.
        name: the file's name inside the folder.
        entry: its manifest entry (role, format, precision, window, ...); sha256 and bytes are
            computed here.

    Returns:
        The bundle as read back after the update.
    """
    folder = Path(path)
    _check_file_name(folder, name)
    _load(folder, skip=frozenset({name}))  # the rest of the bundle must be intact
    if name == WEIGHTS:
        raise BundleError(folder / name, "the weights are written by save_bundle only")
    fpath = folder / name
    if not fpath.is_file():
        raise BundleError(fpath, "missing: write the file before listing it")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][name] = {
        **dict(entry),
        "sha256": sha256_file(fpath),
        "bytes": fpath.stat().st_size,
    }
    _write_json_atomic(folder / MANIFEST, manifest)
    return load_bundle(folder)


def set_operating_point(
    path: str | Path,
    config: ProposalConfig,
    calibration_metadata: Mapping[str, Any] | None = None,
) -> Bundle:
    """Replace a bundle's operating point (``bundle.json`` ``operating_point``) in place.

    Used by the calibration step (``calibration.operating_point``), which chooses the proposal
    configuration on the training subjects' predictions after training. The bundle is verified
    first (as `load_bundle` does), so a damaged bundle is never rewritten; ``bundle.json`` is not
    hashed, so no file entry changes.

    Args:
        path: the bundle folder (or its ``bundle.json``).
        config: the new operating point (what `Bundle.proposal_config` returns from now on).
        calibration_metadata: JSON-ready description of how it was chosen, stored as
            ``metadata.calibration`` (replacing an earlier one); None leaves the metadata alone.

    Returns:
        The bundle as read back after the update.

    Raises:
        ConfigError: config is not a ProposalConfig, or the metadata is not JSON serialisable.
        BundleError: the bundle cannot be read or is damaged.
    """
    folder = Path(path)
    if folder.name == MANIFEST and folder.is_file():
        folder = folder.parent
    if not isinstance(config, ProposalConfig):
        raise ConfigError(f"set_operating_point: expected a ProposalConfig, got {type(config).__name__}")
    _load(folder)  # the bundle must be intact before its manifest is rewritten
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["operating_point"] = config.to_dict()
    if calibration_metadata is not None:
        metadata = manifest.get("metadata") or {}
        metadata["calibration"] = dict(calibration_metadata)
        manifest["metadata"] = metadata
    try:
        json.dumps(manifest, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"set_operating_point: the metadata is not JSON serialisable: {exc}") from exc
    _write_json_atomic(folder / MANIFEST, manifest)
    return load_bundle(folder)


__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_SUFFIX",
    "CLASSES",
    "MANIFEST",
    "WEIGHTS",
    "Bundle",
    "BundleError",
    "FeatureMismatchError",
    "add_file",
    "check_window",
    "default_window",
    "feature_dims",
    "load_bundle",
    "lookahead_seconds",
    "min_window",
    "save_bundle",
    "set_operating_point",
    "sha256_file",
]
