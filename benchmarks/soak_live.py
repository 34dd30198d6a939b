"""Live soak: ``run_live.py`` on ``sim://`` in real time for a long while, watched from outside.

    python benchmarks/soak_live.py [--minutes 30] [--density 20] [--seed 3] [--buffers N]

Starts a subscriber process (``mespot listen --json``, events and status with
heartbeats), then ``run_live.py --source sim://...`` (real time, 30 fps, live policy) with a
journal, on free loopback ports, for --minutes. Every 10 s it samples the runner's resident memory
(VmRSS). At the end it prints the RSS growth (from the sample at 30 s, past start-up, to the last)
and its slope, the dropped frames (the runner's summary and its last heartbeat) and when they were
dropped (from the heartbeats), and the events of the journal against those the subscriber received.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def pump(stream, lines: list[str]) -> None:
    for line in stream:
        lines.append(line.rstrip("\n"))


def drop_bursts(beats: list[dict]) -> list[tuple[float, int, int]]:
    """(uptime s, frames dropped since the previous heartbeat, monotonic ns) where the count rose."""
    out = []
    last = 0
    for beat in beats:
        drops = beat.get("drops")
        if isinstance(drops, int) and drops > last:
            out.append((float(beat.get("uptime_s") or 0.0), drops - last, int(beat["publish_mono_ns"])))
            last = drops
    return out


class CpuSampler:
    """Samples the machine's steal time (/proc/stat: CPU the hypervisor gave to someone else) each second.

    A virtual machine whose host is busy loses whole slices of time that no process inside it can
    see as load; frames dropped then say nothing about mespot.
    """

    def __init__(self, every_s: float = 1.0) -> None:
        self.samples: list[tuple[int, int, int]] = []  # (monotonic ns, steal ticks, all ticks)
        self._tick = os.sysconf("SC_CLK_TCK")
        self._done = threading.Event()
        self._every = every_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])

    def _run(self) -> None:
        while True:
            read = self._read()
            if read is not None:
                self.samples.append((time.monotonic_ns(), *read))
            if self._done.wait(self._every):
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5)

    def stolen_s(self, t0_ns: float = 0, t1_ns: float = float("inf")) -> float:
        """Seconds of CPU stolen from the machine (all cores) between two monotonic times."""
        inside = [(t, st) for t, st, _ in self.samples if t0_ns <= t <= t1_ns + self._every * 1e9]
        if len(inside) < 2:
            return 0.0
        return (inside[-1][1] - inside[0][1]) / self._tick

    def max_steal_share(self) -> float:
        """The largest share of the machine's CPU stolen in one sampling interval."""
        s = self.samples
        shares = [(b[1] - a[1]) / max(b[2] - a[2], 1) for a, b in itertools.pairwise(s)]
        return max(shares, default=0.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="how long the live run lasts (default 30)")
    ap.add_argument("--density", type=float, default=20.0, help="sim:// expressions per 100 s (default 20)")
    ap.add_argument("--seed", type=int, default=3, help="sim:// seed")
    ap.add_argument("--bundle", default=None, help="model bundle (default: the bundled one)")
    ap.add_argument(
        "--buffers", type=int, default=None, help="frames sim:// holds for a late reader (default: its own)"
    )
    args = ap.parse_args()
    seconds = args.minutes * 60.0
    pub, snap = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    load = os.getloadavg()
    print(
        f"# soak_live {date.today()} on {platform.node()} ({platform.machine()}, {os.cpu_count()} cores), "
        f"python {platform.python_version()}; {args.minutes:g} min of sim:// in real time, density "
        f"{args.density:g}/100 s, camera buffers {args.buffers or 'default'}; "
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        journal = Path(tmp) / "soak.jsonl"
        sub_cmd = [
            sys.executable,
            "-m",
            "engine.cli",
            "listen",
            pub,
            "--snapshot",
            snap,
            "--json",
            "--heartbeats",
        ]
        sub_cmd += ["--topics", "event", "status", "--timeout", str(seconds + 600)]
        sub = subprocess.Popen(
            sub_cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        sub_lines: list[str] = []
        sub_reader = threading.Thread(target=pump, args=(sub.stdout, sub_lines), daemon=True)
        sub_reader.start()
        live_cmd = [
            sys.executable,
            "run_live.py",
            "--source",
            f"sim://?seed={args.seed}&density={args.density:g}"
            + (f"&buffers={args.buffers}" if args.buffers is not None else ""),
        ]
        live_cmd += [
            "--duration",
            f"{seconds:g}",
            "--journal",
            str(journal),
            "--pub",
            pub,
            "--snapshot",
            snap,
        ]
        if args.bundle:
            live_cmd += ["--bundle", args.bundle]
        started = time.monotonic()
        live = subprocess.Popen(
            live_cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        out_lines: list[str] = []
        err_lines: list[str] = []
        readers = [
            threading.Thread(target=pump, args=(live.stdout, out_lines), daemon=True),
            threading.Thread(target=pump, args=(live.stderr, err_lines), daemon=True),
        ]
        for r in readers:
            r.start()
        samples: list[tuple[float, float]] = []
        cpu = CpuSampler()
        while True:
            try:
                live.wait(SAMPLE_S)
                break
            except subprocess.TimeoutExpired:
                mb = rss_mb(live.pid)
                if mb is not None:
                    samples.append((time.monotonic() - started, mb))
        wall = time.monotonic() - started
        cpu.stop()
        for r in readers:
            r.join(10)
        time.sleep(1.0)  # the subscriber takes the last messages
        sub.send_signal(signal.SIGINT)
        try:
            sub.wait(30)
        except subprocess.TimeoutExpired:
            sub.kill()
        sub_reader.join(10)
        journal_msgs = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]

    received = [json.loads(line) for line in sub_lines if line.startswith("{")]
    got = [m for m in received if m.get("kind") == "event"]
    gaps = [m for m in received if m.get("kind") == "gap"]
    beats = [m for m in received if m.get("kind") == "status" and m.get("status") == "heartbeat"]
    events = [m for m in journal_msgs if m["kind"] == "event"]
    key = {(m["session"], m["seq"]) for m in got}
    missing = [m["seq"] for m in events if (m["session"], m["seq"]) not in key]
    identical = got == events
    summary = next((line for line in err_lines if " frames, " in line and "dropped" in line), "")
    dropped = re.search(r"dropped (\d+)", summary)
    last_beat = beats[-1] if beats else {}
    times = np.array([t for t, _ in samples])
    mbs = np.array([m for _, m in samples])
    after = times >= 30.0
    base = mbs[after][0] if after.any() else (mbs[0] if len(mbs) else float("nan"))
    slope = float(np.polyfit(times[after] / 60.0, mbs[after], 1)[0]) if after.sum() >= 3 else float("nan")

    print("\n| quantity | value |")
    print("|---|---|")
    print(f"| run_live exit status | {live.returncode} (wall {wall:.0f} s) |")
    if len(mbs):
        print(
            f"| RSS (MiB): at {times[after][0] if after.any() else times[0]:.0f} s / last / max | "
            f"{base:.1f} / {mbs[-1]:.1f} / {mbs.max():.1f} |"
        )
        print(f"| RSS growth after start-up | {mbs[-1] - base:+.1f} MiB ({slope:+.2f} MiB/min, linear fit) |")
        print(f"| RSS samples (every {SAMPLE_S:g} s) | {len(mbs)} |")
    print(f"| dropped frames (runner summary) | {dropped.group(1) if dropped else '?'} |")
    print(
        f"| last heartbeat: fps / drops / face / latency | {last_beat.get('fps')} / {last_beat.get('drops')} "
        f"/ {last_beat.get('face')} / {last_beat.get('latency_s')} |"
    )
    print(f"| heartbeats received | {len(beats)} |")
    print(f"| events: journal / subscriber | {len(events)} / {len(got)} |")
    print(f"| events missing at the subscriber | {len(missing)} {missing[:10] if missing else ''} |")
    print(f"| subscriber events identical to the journal's | {identical} |")
    print(f"| gap reports at the subscriber | {len(gaps)} |")
    bursts = drop_bursts(beats)
    print(
        f"| CPU time stolen by the hypervisor during the run | {cpu.stolen_s():.1f} s "
        f"(max {cpu.max_steal_share() * 100:.0f} % of the machine in one second) |"
    )
    if bursts:
        print(
            "\nwhen frames were dropped (heartbeat uptime: frames dropped since the previous heartbeat, "
            "CPU stolen from the machine in the 2 s before):"
        )
        print(
            "  "
            + ", ".join(
                f"{t:.0f} s: +{n} ({cpu.stolen_s(mono - 2e9, mono) * 1e3:.0f} ms)"
                for t, n, mono in bursts[:60]
            )
        )
    print(f"\nrunner: {summary.strip()}")
    truth = next((line for line in err_lines if line.startswith("against the simulation")), "")
    if truth:
        print(f"runner: {truth.strip()}")
    if len(mbs):
        print("\nRSS MiB every 10 s: " + " ".join(f"{m:.0f}" for m in mbs))
    return 0 if live.returncode == 0 and identical else 1


if __name__ == "__main__":
    sys.exit(main())
