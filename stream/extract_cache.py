"""On-disk snippet features, keyed by the feature configuration's hash.

Layout under the output folder:

    OUT/<config digest>/config.json        the FeatureConfig that made every file beside it
    OUT/<config digest>/<key>.npz          motion, geometry, valid, start_s
    OUT/<config digest>/<key>.json         source path, size, mtime, snippet count, events

A file is reused when its source's size and modification time still match; anything else
(a changed source, a different configuration) is extracted again, unless a richer configuration's
current file holds it (`FeatureCache.lookup_view`, `stream.feature_view`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.config import FeatureConfig
from stream.errors import ConfigError
from stream.feature_view import FeatureView, try_feature_view
from stream.pipeline import Extraction, StatusEvent


def source_key(source: Path) -> str:
    """A file name for a source: its path's last parts, made filesystem-safe."""
    parts = source.resolve().parts[-3:]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(parts)).strip("_")


def _stamp(source: Path) -> dict[str, float]:
    st = source.stat()
    if source.is_dir():  # a frame folder changes when any frame does
        mtimes = [p.stat().st_mtime for p in source.iterdir()]
        return {"size": float(len(mtimes)), "mtime": max(mtimes, default=st.st_mtime)}
    return {"size": float(st.st_size), "mtime": st.st_mtime}


@dataclass
class FeatureCache:
    """The cache folder of one feature configuration."""

    root: Path
    config: FeatureConfig

    @property
    def folder(self) -> Path:
        return self.root / self.config.digest()

    def paths(self, source: Path) -> tuple[Path, Path]:
        key = source_key(source)
        return self.folder / f"{key}.npz", self.folder / f"{key}.json"

    def lookup(self, source: Path) -> Path | None:
        """The cached .npz for `source` if it is still current, else None."""
        npz, meta = self.paths(source)
        if not (npz.exists() and meta.exists()):
            return None
        try:
            info = json.loads(meta.read_text())
        except json.JSONDecodeError:
            return None
        return npz if info.get("stamp") == _stamp(source) else None

    def lookup_view(self, source: Path) -> tuple[Path, FeatureView] | None:
        """A current .npz of another configuration under the same root that this one's features
        can be read out of, with the view that reads them; None if there is none."""
        for cfg_file in sorted(self.root.glob("*/config.json")):
            if cfg_file.parent == self.folder:
                continue
            try:
                other = FeatureConfig.from_dict(json.loads(cfg_file.read_text()))
            except (ConfigError, json.JSONDecodeError, TypeError):
                continue  # another mespot's layout, or a damaged file: not a source
            view = try_feature_view(other, self.config)
            if view is not None and (npz := FeatureCache(self.root, other).lookup(source)) is not None:
                return npz, view
        return None

    def store(self, source: Path, result: Extraction) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        cfg = self.folder / "config.json"
        if not cfg.exists():
            cfg.write_text(json.dumps(self.config.to_dict(), indent=2, sort_keys=True))
        npz, meta = self.paths(source)
        tmp = npz.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp, motion=result.motion, geometry=result.geometry, valid=result.valid, start_s=result.start_s
        )
        os.replace(tmp, npz)  # atomic: an interrupted run never leaves a half-written file
        meta.write_text(
            json.dumps(
                {
                    "source": str(source.resolve()),
                    "stamp": _stamp(source),
                    "snippets": len(result.valid),
                    "valid_snippets": int(result.valid.sum()),
                    "config_digest": self.config.digest(),
                    "events": [_event_dict(e) for e in result.events],
                },
                indent=2,
            )
        )
        return npz


def _event_dict(e: StatusEvent) -> dict[str, object]:
    return {
        "kind": e.kind.value,
        "frame": e.frame_index,
        "time_s": round(e.media_time_s, 4),
        "detail": e.detail,
    }


def load_features(npz: Path) -> dict[str, np.ndarray]:
    """Arrays of one cached extraction (motion, geometry, valid, start_s)."""
    with np.load(npz) as data:
        return {k: data[k] for k in data.files}
