"""What one request costs the publisher in memory, by its shape.

    python benchmarks/request_memory.py

A client in another process sends one request to a `Publisher`'s snapshot endpoint; this
process samples its own resident memory (VmRSS) until the client has its reply or gives up. The
shapes: one frame over the size limit (ZeroMQ drops the connection before reading it), and many
frames each under the hard per-frame limit, which ZeroMQ assembles whole before the publisher
sees the request (its size limit is per frame: libzmq has no limit on a message's frame count).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import date

from stream.publish import Publisher

SENDER = r"""
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.linger = 0
s.connect(sys.argv[1])
frames, size = int(sys.argv[2]), int(sys.argv[3])
s.send_multipart([b""] + [b"x" * size] * frames)
print("reply" if s.poll(8000) else "no reply", flush=True)
"""


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.parse_args()
    shapes = [  # (frames, bytes per frame)
        (1, 50_000_000),
        (100, 200_000),
        (1500, 200_000),
    ]
    machine = platform.processor() or platform.machine()
    print(f"# {platform.node()} {machine}, {os.cpu_count()} CPUs, {date.today()}")
    print("| request | reply | publisher RSS before | peak | after |")
    print("|---|---|---|---|---|")
    with Publisher("cam0", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*") as pub:
        for frames, size in shapes:
            time.sleep(0.5)
            before = rss_mb()
            client = subprocess.Popen(
                [sys.executable, "-c", SENDER, pub.snapshot_endpoint, str(frames), str(size)],
                stdout=subprocess.PIPE,
                text=True,
            )
            peak = before
            while client.poll() is None:
                peak = max(peak, rss_mb())
                time.sleep(0.01)
            time.sleep(0.5)
            answer = client.stdout.read().strip() if client.stdout else "?"
            print(
                f"| {frames} frame(s) x {size / 1e6:g} MB | {answer} | {before:.0f} MB | {peak:.0f} MB "
                f"| {rss_mb():.0f} MB |"
            )


if __name__ == "__main__":
    main()
