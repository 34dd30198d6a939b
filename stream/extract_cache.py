"""On-disk snippet features, keyed by the feature configuration's hash.

Layout under the output folder:

    OUT/<config digest>/config.json        the FeatureConfig that made every file beside it
    OUT/<config digest>/<key>.npz          motion, geometry, valid, start_s
    OUT/<config digest>/<key>.json         source path, identity stamp, snippet count, events

The key is a readable name from the path's last parts plus a hash of the full resolved path, so
two sources whose names differ only in characters the readable part leaves out (non-ASCII letters,
spaces) never share a file. A file is reused when its source's recorded path and identity still
match: size, modification time (ns), inode and a hash of its first and last 64 KiB (for a frame
folder, of its entries' names, sizes and times); anything else (a changed source, a different
configuration) is extracted again, unless a richer configuration's current file holds it
(`FeatureCache.lookup_view`, `stream.feature_view`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.config import FeatureConfig
from stream.errors import ConfigError, SourceEmpty
from stream.feature_view import FeatureView, try_feature_view
from stream.frame import StatusEvent
from stream.pipeline import Extraction

_SAMPLE = 65536  # bytes hashed at each end of a file: a content identity at the cost of two reads


def _path_bytes(path: Path) -> bytes:
    # surrogateescape: a name that is not valid UTF-8 still hashes to its own bytes
    return os.fsencode(str(path))


def _readable(resolved: Path) -> str:
    """A resolved path's last three parts, made filesystem-safe (the earlier layout's whole key)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(resolved.parts[-3:])).strip("_")


def source_key(source: Path) -> str:
    """A file name for a source: its path's last parts made filesystem-safe, plus a hash of the
    full resolved path (the readable part alone is lossy)."""
    resolved = source.resolve()
    readable = _readable(resolved)[:120]
    digest = hashlib.sha256(_path_bytes(resolved)).hexdigest()[:16]
    return f"{digest}-{readable}"


def _stamp(source: Path) -> dict[str, object]:
    """The source's identity: what changes when its content does (module docstring)."""
    st = source.stat()
    h = hashlib.sha256()
    if source.is_dir():  # a frame folder changes when any frame does
        entries = sorted(source.iterdir())
        for p in entries:
            pst = p.stat()
            h.update(_path_bytes(Path(p.name)) + f"\0{pst.st_size}\0{pst.st_mtime_ns}\n".encode())
        size, mtime_ns = len(entries), max((p.stat().st_mtime_ns for p in entries), default=st.st_mtime_ns)
    else:
        with source.open("rb") as f:
            h.update(f.read(_SAMPLE))
            if st.st_size > 2 * _SAMPLE:
                f.seek(-_SAMPLE, os.SEEK_END)
                h.update(f.read(_SAMPLE))
        size, mtime_ns = st.st_size, st.st_mtime_ns
    return {
        "path": os.fsdecode(_path_bytes(source.resolve())),
        "size": size,
        "mtime_ns": mtime_ns,
        "inode": st.st_ino,
        "sha256_ends": h.hexdigest(),
    }


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
            return self._adopt_legacy(source)
        try:
            info = json.loads(meta.read_text())
        except json.JSONDecodeError:
            return None
        return npz if info.get("stamp") == _stamp(source) else None

    def _adopt_legacy(self, source: Path) -> Path | None:
        """A file of the earlier layout (key: the path's last parts only; stamp: size and mtime)
        is taken over, renamed to the new key and restamped, when its record names this very
        source (the full resolved path) and the size and mtime still match; else None. Caches
        made before the keys carried a path hash are not extracted again."""
        resolved = source.resolve()
        old_key = _readable(resolved)
        old_npz, old_meta = self.folder / f"{old_key}.npz", self.folder / f"{old_key}.json"
        if not (old_npz.exists() and old_meta.exists()):
            return None
        try:
            info = json.loads(old_meta.read_text())
            stamp = info["stamp"]
            st = source.stat()
            if source.is_dir() or info.get("source") != str(resolved):
                return None  # another source under a colliding name, or a frame folder: extract
            if float(stamp["size"]) != float(st.st_size) or float(stamp["mtime"]) != st.st_mtime:
                return None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, OSError):
            return None
        npz, meta = self.paths(source)
        info["source"] = os.fsdecode(_path_bytes(resolved))
        info["stamp"] = _stamp(source)
        os.replace(old_npz, npz)
        meta.write_text(json.dumps(info, indent=2))
        old_meta.unlink()
        return npz

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
                    "source": os.fsdecode(_path_bytes(source.resolve())),
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


def require_snippets(source: Path, valid: np.ndarray, what: str = "") -> None:
    """Refuse an input that yields no valid snippet (a 1-frame clip, an image renamed .mp4, a
    folder of unreadable images, no face anywhere): nothing can be learned or spotted from it.

    Args:
        source: the input (named in the error).
        valid: (T,) the snippets' validity.
        what: how the user knows the input (a dataset's video id), added to the message.

    Raises:
        SourceEmpty: no snippet, or none valid.
    """
    label = f" (video {what})" if what else ""
    if len(valid) == 0:
        raise SourceEmpty(
            source,
            f"yields no snippet{label}: too few frames were read for one (a very short clip, "
            "or frames that cannot be decoded)",
        )
    if not np.any(valid):
        raise SourceEmpty(source, f"yields no valid snippet{label}: {len(valid)} snippets, none with a face")


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
