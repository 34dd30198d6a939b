"""What the broker adds: latency per message and the message rate it forwards.

    python benchmarks/broker_bench.py [--latency-messages 1000] [--rate-messages 50000]

A `Publisher` in this process; `mespot broker` in its own process in front of it; two
subscribers in this process, one on the publisher directly and one on the broker, each in its own
thread. Latency: score messages at 200 a second, each timed from its `publish_mono_ns` to its
arrival (one machine, one monotonic clock), direct and through the broker side by side in one run.
Rate: score messages published as fast as the publisher takes them; messages a second arriving
through the broker (and directly) over the burst.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import date

import zmq

from stream.publish import Publisher


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class Sub:
    """A SUB socket in a thread: arrival delay (ms) and arrival time per score message."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.rcvhwm = 0
        self.sock.subscribe(b"mespot.")
        self.sock.connect(endpoint)
        self.delays: list[float] = []
        self.arrivals: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.sock.poll(50):
                topic, data = self.sock.recv_multipart()
                now = time.monotonic_ns()
                if topic.endswith(b".score"):
                    self.delays.append((now - json.loads(data)["publish_mono_ns"]) / 1e6)
                    self.arrivals.append(now)

    def reset(self) -> None:
        self.delays, self.arrivals = [], []

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close(0)
        self.ctx.term()


def wait_for(cond, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return cond()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-messages", type=int, default=1000)
    ap.add_argument("--rate-messages", type=int, default=50_000)
    args = ap.parse_args()
    pub_ep, snap_ep, bpub, bsnap = (free_endpoint() for _ in range(4))
    broker = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "broker", "--quiet", "--spotter", f"{pub_ep},{snap_ep}",
         "--pub", bpub, "--snapshot", bsnap]
    )  # fmt: skip
    try:
        with Publisher("cam0", pub_ep, snap_ep, heartbeat_s=0.5) as pub:
            direct, brokered = Sub(pub_ep), Sub(bpub)
            try:
                # Wait until both subscribers receive (the broker has connected and forwards).
                k = 0
                while not (direct.arrivals and brokered.arrivals):
                    pub.publish_scores(k, [0.1, 0.2], 0.3)
                    k += 1
                    time.sleep(0.05)
                    if k > 400:
                        raise RuntimeError("the broker forwarded nothing within 20 s")
                time.sleep(0.3)
                direct.reset(), brokered.reset()
                for i in range(args.latency_messages):
                    pub.publish_scores(k + i, [0.1, 0.2], 0.3)
                    time.sleep(1 / 200)
                n = args.latency_messages
                wait_for(lambda: len(brokered.delays) >= n and len(direct.delays) >= n, 10)
                lat = {"direct": list(direct.delays), "through the broker": list(brokered.delays)}
                direct.reset(), brokered.reset()
                k += n
                t0 = time.monotonic()
                for i in range(args.rate_messages):
                    pub.publish_scores(k + i, [0.1, 0.2], 0.3)
                pub.flush(60)
                publish_s = time.monotonic() - t0
                m = args.rate_messages
                wait_for(lambda: len(brokered.arrivals) >= m and len(direct.arrivals) >= m, 60)
                rates = {}
                for name, sub in (("direct", direct), ("through the broker", brokered)):
                    span = (
                        (sub.arrivals[-1] - sub.arrivals[0]) / 1e9 if len(sub.arrivals) > 1 else float("nan")
                    )
                    rates[name] = (len(sub.arrivals), len(sub.arrivals) / span)
            finally:
                direct.close()
                brokered.close()
    finally:
        broker.terminate()
        broker.wait(20)
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {date.today()}")
    print(f"| path | latency p50 ms | p99 ms | max ms ({args.latency_messages} messages at 200/s) |")
    print("|---|---|---|---|")
    for name, d in lat.items():
        print(f"| {name} | {statistics.median(d):.3f} | {pct(d, 99):.3f} | {max(d):.3f} |")
    print(f"\nburst of {args.rate_messages} score messages, published in {publish_s:.2f} s:")
    print("| path | received | messages/s |")
    print("|---|---|---|")
    for name, (got, rate) in rates.items():
        print(f"| {name} | {got} | {rate:.0f} |")


if __name__ == "__main__":
    main()
