"""Where a profiled run spent its time: the share of samples in which each function was on the stack.

    py-spy record -r 20 --format speedscope -o PROFILE.json -- mespot train ... --loso --folds 1
    python benchmarks/speedscope_summary.py PROFILE.json [--top 30] [--thread NAME]

Reads a speedscope file as `py-spy` writes it and prints, for its busiest thread (or the one
named), the functions by the share of the thread's sampled time they were anywhere on the stack
(a caller counts its callees' time, once per sample however deep the recursion).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def shares(profile: dict, frames: list[dict]) -> tuple[float, Counter]:
    """(the thread's sampled seconds, function name -> seconds on the stack)."""
    on_stack: Counter = Counter()
    total = 0.0
    for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
        total += weight
        for name in {frames[i]["name"] for i in stack}:
            on_stack[name] += weight
    return total, on_stack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", type=Path, help="a speedscope JSON file (py-spy record --format speedscope)")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--thread", help="a thread name as the file gives it (default: the busiest)")
    args = ap.parse_args()
    try:
        data = json.loads(args.profile.read_text())
        frames, profiles = data["shared"]["frames"], data["profiles"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"{args.profile}: not a speedscope profile ({exc})") from None
    summaries = [(p["name"], *shares(p, frames)) for p in profiles]
    if args.thread is not None:
        summaries = [s for s in summaries if s[0] == args.thread]
        if not summaries:
            raise SystemExit(f"{args.profile}: no thread named {args.thread!r}")
    name, total, on_stack = max(summaries, key=lambda s: s[1])
    print(f"# {args.profile}: thread {name!r}, {total:.0f} s sampled")
    for function, seconds in on_stack.most_common(args.top):
        print(f"{seconds / total:6.1%}  {function}")


if __name__ == "__main__":
    main()
