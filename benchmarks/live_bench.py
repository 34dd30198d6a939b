"""Live benchmark: event latency, scorer latency per backend, end-to-end replay speed.

    python benchmarks/live_bench.py [--seconds 120] [--density 40] [--replay-seconds 60] [--bundle B]

1. Replay speed: a synthetic recording (--replay-seconds, one subject, distractors on) run through
   `engine.live.LiveRunner` in fast mode (replay policy, nothing dropped, default backend), as
   ``run_live.py --source FILE --fast`` does: media seconds processed per wall second.
2. Scorer latency: the snippets of that recording scored one by one with `StreamScorer` (a window of
   the last W snippets per call, as live) on each backend that can run here (torch, onnxruntime,
   tensorrt): wall time per snippet, p50 / p95 / max (the first W, while the window fills, left
   out). Torch runs with --torch-threads intra-op threads (default 1, as the onnxruntime backend).
3. Event latency: ``sim://`` in real time (30 fps, wall-clock paced, live policy) for --seconds at
   --density expressions per 100 s, published on a real ZeroMQ socket; per event, publish time
   minus the capture time of the interval's offset frame (the ``latency_s`` of the event message),
   p50 / p95 per type, with the online spotter's share (snippets seen after the interval's last
   snippet before it was final) and the capture-to-score latency per snippet.

Prints markdown with the machine, the date and the load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from engine.bundle import load_bundle
from engine.evaluate import evaluate
from engine.live import LiveRunner, default_bundle
from engine.runtime import AUTO_ORDER, BACKENDS, StreamScorer, open_backend
from stream.errors import MespotError
from stream.publish import Publisher
from stream.ring import Snippet


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def fmt(x: float, digits: int = 2) -> str:
    return "-" if x != x else f"{x:.{digits}f}"


def make_recording(seconds: float, out: Path) -> Path:
    from stream.synth.dataset import recipe_from, write_dataset
    from stream.synth.identity import load_faces

    recipe = recipe_from(None, videos=1, seconds=seconds, seed=11, density=30.0)
    write_dataset(recipe, load_faces(["bundled:single_face"]), out, workers=1)
    return next((out / "videos").glob("*.mp4"))


def replay_speed(video: Path, bundle) -> tuple[dict, list[Snippet]]:
    snippets: list[Snippet] = []
    with LiveRunner(video, bundle, mode="fast", on_snippet=snippets.append) as runner:
        report = runner.run()
    return {
        "media_s": report.media_s,
        "wall_s": report.wall_s,
        "speed": report.media_s / report.wall_s,
        "frames": report.frames,
        "backend": report.backend,
        "dropped": report.dropped,
    }, snippets


def scorer_latency(bundle, snippets: list[Snippet], torch_threads: int) -> list[dict]:
    import torch

    rows = []
    default_threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads)  # as onnxruntime's backend, one intra-op thread by default
    for name in ("torch", "onnxruntime", "tensorrt"):
        reason = BACKENDS.get(name).unavailable(bundle)  # type: ignore[attr-defined]
        if reason is not None:
            rows.append({"backend": name, "skipped": reason})
            continue
        try:
            backend = open_backend(bundle, name)
        except MespotError as exc:
            rows.append({"backend": name, "skipped": f"failed to open: {exc}"})
            continue
        with backend:
            scorer = StreamScorer(backend)
            times = []
            for s in snippets:
                t0 = time.perf_counter_ns()
                scorer.push(s)
                times.append((time.perf_counter_ns() - t0) / 1e6)
            warm = times[backend.window :] or times  # after the window has filled
            rows.append(
                {
                    "backend": name,
                    "window": backend.window,
                    "n": len(warm),
                    "p50": pct(warm, 50),
                    "p95": pct(warm, 95),
                    "max": max(warm),
                }
            )
    torch.set_num_threads(default_threads)
    return rows


def event_latency(bundle, seconds: float, density: float) -> dict:
    publisher = Publisher("bench", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
    spec = f"sim://?seed=7&density={density:g}&seconds={seconds:g}"
    with LiveRunner(spec, bundle, mode="realtime", publisher=publisher) as runner:
        report = runner.run()
        truth = runner.truth() or []
        max_latency_s = runner.max_latency_s
        snippet_s = runner.snippet_s
    out: dict = {"report": report, "max_latency_s": max_latency_s, "snippet_s": snippet_s}
    for etype in ("me", "mae"):
        events = [e for e in report.events if e.interval.type.value == etype and not e.flushed]
        lat = [e.latency_s for e in events if e.latency_s is not None]
        after = [e.spotted.latency_snippets for e in events]
        out[etype] = {
            "n": len(lat),
            "p50": pct(lat, 50),
            "p95": pct(lat, 95),
            "max": max(lat) if lat else float("nan"),
            "snippets_p50": pct(after, 50),
            "snippets_max": max(after) if after else float("nan"),
        }
    preds = [e.interval for e in report.events]
    out["eval"] = evaluate({"sim": preds}, {"sim": truth}, runner.fps)
    out["truths"] = len(truth)
    out["score_latency"] = list(report.score_latency_s)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0, help="length of the real-time sim:// run")
    ap.add_argument("--density", type=float, default=40.0, help="expressions per 100 s in the sim:// run")
    ap.add_argument("--replay-seconds", type=float, default=60.0, help="length of the replayed recording")
    ap.add_argument("--bundle", default=None, help="model bundle (default: the bundled one)")
    ap.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads for the scorer timing (default 1)"
    )
    args = ap.parse_args()
    bundle = load_bundle(args.bundle or default_bundle())
    import onnxruntime
    import torch

    load = os.getloadavg()
    print(
        f"# live_bench {date.today()} on {platform.node()} ({platform.machine()}, {os.cpu_count()} cores), "
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}"
    )
    ahead = f", look-ahead {bundle.lookahead_s:.3g} s" if bundle.lookahead else ""
    print(
        f"bundle {bundle.path.name} ({bundle.method_name}, W={bundle.window}, receptive field "
        f"{bundle.receptive_field}{ahead}); load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"auto backend order {', '.join(AUTO_ORDER)}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        video = make_recording(args.replay_seconds, Path(tmp) / "rec")
        replay, snippets = replay_speed(video, bundle)
    print(f"\n## End-to-end replay (--fast), {args.replay_seconds:.0f} s synthetic recording, 640x480\n")
    print("| media s | wall s | x real time | frames | dropped | backend |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {replay['media_s']:.1f} | {replay['wall_s']:.1f} | {replay['speed']:.2f} | {replay['frames']} "
        f"| {replay['dropped']} | {replay['backend']} |"
    )

    print(
        f"\n## Scorer latency per snippet ({len(snippets)} real snippets, StreamScorer.push; torch "
        f"{args.torch_threads} thread(s), onnxruntime 1 intra-op thread)\n"
    )
    print("| backend | window W | snippets | p50 ms | p95 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for row in scorer_latency(bundle, snippets, args.torch_threads):
        if "skipped" in row:
            print(f"| {row['backend']} | - | - | - | - | not here: {row['skipped']} |")
        else:
            print(
                f"| {row['backend']} | {row['window']} | {row['n']} | {row['p50']:.3f} | {row['p95']:.3f} "
                f"| {row['max']:.3f} |"
            )

    lat = event_latency(bundle, args.seconds, args.density)
    report = lat["report"]
    print(
        f"\n## Event latency, sim:// real time 30 fps, {args.seconds:.0f} s, density {args.density:g}/100 s\n"
    )
    print(
        f"{report.summary()}\n\nlatency = publish time - capture time of the offset frame; 'after' = "
        f"snippets ({lat['snippet_s'] * 1000:.0f} ms each) seen after the interval's last snippet before "
        f"the online spotter finalised it (worst case {lat['max_latency_s']:.2f} s)\n"
    )
    print("| type | events | p50 s | p95 s | max s | after p50 (snippets) | after max |")
    print("|---|---|---|---|---|---|---|")
    for etype in ("me", "mae"):
        r = lat[etype]
        print(
            f"| {etype.upper() if etype == 'me' else 'MaE'} | {r['n']} | {fmt(r['p50'])} | {fmt(r['p95'])} "
            f"| {fmt(r['max'])} | {fmt(r['snippets_p50'], 0)} | {fmt(r['snippets_max'], 0)} |"
        )
    sl = lat["score_latency"]
    ev = lat["eval"]
    print(
        f"\ncapture-to-score latency per snippet: p50 {pct(sl, 50) * 1000:.0f} ms, "
        f"p95 {pct(sl, 95) * 1000:.0f} ms (newest frame of the snippet to its score)\n"
        f"against the simulation's ground truth ({lat['truths']} expressions): ME F1 {ev.me.f1:.2f}, "
        f"MaE F1 {ev.mae.f1:.2f}, overall F1 {ev.overall.f1:.2f}"
    )


if __name__ == "__main__":
    main()
