"""Feature extraction spread over a Ray cluster: `mespot extract --ray [ADDRESS]`.

Each input that is not yet cached becomes one Ray task running the same replay pipeline a serial
`mespot extract` runs (`stream.pipeline.extract`); the driver writes each result into the same
feature cache as it arrives, so the cache is written by one process and its files are the ones a
serial run writes, array for array. Without an address a local cluster is started on this
machine (``--ray-cpus`` sets its size); with one (``ray://head:10001`` or ``auto``) the tasks run
on that cluster's workers, which must have mespot installed and see the inputs at the same paths
(a shared file system), as Ray clusters for data processing usually do.

Ray is an optional extra (``pip install -e ".[ray]"``): imported here only.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stream.config import FeatureConfig
from stream.errors import ConfigError, MespotError, SourceEmpty
from stream.extract_cache import FeatureCache, require_snippets

log = logging.getLogger(__name__)


def _extract_task(source: str, config: dict[str, Any], source_fps: float | None) -> tuple[str, Any]:
    """One input on a worker: ("ok", Extraction), ("empty", message) or ("error", message), never
    an exception (a worker's exception types need not unpickle on the driver)."""
    from stream.config import FeatureConfig
    from stream.errors import SourceEmpty
    from stream.pipeline import extract

    try:
        return "ok", extract(Path(source), FeatureConfig.from_dict(config), source_fps=source_fps)
    except SourceEmpty as exc:
        return "empty", str(exc)
    except MespotError as exc:
        return "error", str(exc)
    except Exception as exc:  # a worker must report, not die: the driver names the input
        return "error", f"{source}: {type(exc).__name__}: {exc}"


def extract_on_ray(
    sources: Sequence[Path],
    config: FeatureConfig,
    cache: FeatureCache,
    *,
    address: str | None = None,
    cpus: int | None = None,
    force: bool = False,
    source_fps: float | None = None,
    report: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
) -> tuple[dict[Path, Path], dict[Path, tuple[bool, str]]]:
    """Extract the inputs not yet cached on a Ray cluster and store them in `cache`.

    Args:
        sources: the inputs (video files, frame folders).
        config: the feature configuration.
        cache: where the features go (written by this process only).
        address: the cluster to join; None starts a local one.
        cpus: the local cluster's size (None: every core); ignored with an address.
        force: extract even what is cached.
        source_fps: the frame rate of frame folders.
        report: where per-input progress lines go.

    Returns:
        (input -> its cached .npz, input -> (whether it yields no valid snippet, why it failed)).

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.
    """
    try:
        import ray
    except ImportError as exc:
        raise ConfigError('--ray needs Ray: pip install -e ".[ray]" (or pip install ray)') from exc
    done: dict[Path, Path] = {}
    failed: dict[Path, tuple[bool, str]] = {}
    todo: list[Path] = []
    for source in sources:
        hit = None if force else cache.lookup(source)
        if hit is not None:
            report(f"{source}: cached {hit}")
            done[source] = hit
        else:
            todo.append(source)
    if not todo:
        return done, failed
    started = not ray.is_initialized()
    if started:
        try:
            if address is None:
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError ...
            raise ConfigError(
                f"--ray {address or '(local)'}: cannot start or join the cluster: {exc}"
            ) from exc
    try:
        task = ray.remote(_extract_task)
        settings = config.to_dict()
        pending = {task.remote(str(s.resolve()), settings, source_fps): s for s in todo}
        report(f"ray: {len(todo)} input(s) on {ray.cluster_resources().get('CPU', 0):g} CPUs")
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            source = pending.pop(ready[0])
            status, value = ray.get(ready[0])
            if status != "ok":
                failed[source] = (status == "empty", value)
                continue
            try:
                require_snippets(source, value.valid)  # before storing, as a serial run does
            except SourceEmpty as exc:
                failed[source] = (True, str(exc))
                continue
            done[source] = cache.store(source, value)
            report(
                f"{source}: {len(value.valid)} snippets ({int(value.valid.sum())} valid) -> {done[source]}"
            )
    finally:
        if started:
            ray.shutdown()
    return done, failed
