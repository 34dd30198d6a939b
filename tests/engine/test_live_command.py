"""The ``neutral_restart`` command: a running live spotter collects its neutral baseline afresh.

A real `LiveRunner` on an unpaced ``sim://`` stream with a (random, untrained) bundle whose network
uses a neutral baseline; the command travels over real sockets (`stream.listen.send_command`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from engine.bundle import save_bundle
from engine.export import export
from engine.live import NEUTRAL_COLLECTING, NEUTRAL_NONE, NEUTRAL_RESTART, LiveRunner
from engine.models import NetworkConfig, build_network
from engine.runtime import SnippetScore
from engine.train import TrainConfig
from stream.config import FeatureConfig
from stream.listen import send_command
from stream.publish import Publisher

ANY_PORT = "tcp://127.0.0.1:*"
NEUTRAL_S = 1.0


@pytest.fixture(scope="module")
def neutral_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    network = build_network(NetworkConfig(network="gim", embed_dim=16, neutral_s=NEUTRAL_S)).eval()
    folder = save_bundle(
        tmp_path_factory.mktemp("bundle") / "n.mespot",
        network,
        TrainConfig(network=network.config, method="full"),
        FeatureConfig(flow_scales_s=(0.1,), eye_openness=False),  # 153 + 153 inputs
    )
    export(folder, "onnx")
    return folder


def _invalid_run(valid: list[bool], start: int) -> tuple[int, int]:
    """(first, length) of the first run of invalid snippets at or after `start`."""
    first = next(j for j in range(start, len(valid)) if not valid[j])
    end = next((j for j in range(first, len(valid)) if valid[j]), len(valid))
    return first, end - first


@pytest.mark.timeout(60)
def test_neutral_restart_command_recollects_the_baseline(neutral_bundle: Path, tmp_path: Path) -> None:
    journal = tmp_path / "sim.jsonl"
    publisher = Publisher("sim", ANY_PORT, ANY_PORT, journal=journal, allow_local_commands=True)
    scores: list[SnippetScore] = []
    replies: list[dict] = []
    marks: list[int] = []
    fed = threading.Condition()

    def on_score(score: SnippetScore) -> None:
        with fed:
            scores.append(score)
            fed.notify_all()

    with LiveRunner(
        "sim://?seed=1",
        neutral_bundle,
        mode="fast",
        backend="onnxruntime",
        publisher=publisher,
        on_score=on_score,
    ) as runner:
        need = runner.scorer.neutral.need

        def operator() -> None:
            try:
                with fed:  # the first baseline is collected: snippets score again
                    assert fed.wait_for(lambda: any(s.valid for s in scores), 30.0)
                    marks.append(len(scores))
                replies.append(send_command(publisher.snapshot_endpoint, NEUTRAL_RESTART, timeout_s=5.0))
                with fed:  # collecting afresh, then scoring again
                    fed.wait_for(lambda: len(scores) > marks[0] + need + 6, 30.0)
            finally:
                runner.stop()

        worker = threading.Thread(target=operator)
        worker.start()
        report = runner.run()
        worker.join(10.0)
    assert report.end_reason == "stopped"
    assert len(replies) == 1, "no reply"
    reply = replies[0]
    assert reply["ok"] is True and reply["command"] == NEUTRAL_RESTART and reply["stream"] == "sim"
    assert reply["detail"].startswith(NEUTRAL_COLLECTING)
    statuses = [json.loads(line) for line in journal.read_text().splitlines()]
    restarts = [m for m in statuses if m["kind"] == "status" and m["detail"] == NEUTRAL_COLLECTING]
    assert len(restarts) == 1 and restarts[0]["status"] == "source"
    # Before the command the baseline was collected once (the stream's first `need` face snippets
    # score NaN); after it, the next `need` face snippets score NaN again, then scoring resumes.
    valid = [s.valid for s in scores]
    assert valid[: marks[0]].count(False) >= need and valid[marks[0] - 1]
    first, length = _invalid_run(valid, marks[0])
    # At least `need`: face snippets lost during the new collection do not count toward it.
    assert length >= need and first + length < len(valid), (marks, need, valid)
    assert runner.scorer.neutral.ready


def test_neutral_restart_without_a_neutral_baseline_is_ok_and_says_so() -> None:
    publisher = Publisher("sim", ANY_PORT, ANY_PORT, allow_local_commands=True)
    with LiveRunner("sim://?seed=1", mode="fast", publisher=publisher) as runner:
        assert not runner.uses_neutral
        reply = send_command(publisher.snapshot_endpoint, NEUTRAL_RESTART, timeout_s=5.0)
        assert reply["ok"] is True and reply["detail"].startswith(NEUTRAL_NONE)
        refused = send_command(publisher.snapshot_endpoint, "neutral-restart", timeout_s=5.0)
        assert refused["ok"] is False and NEUTRAL_RESTART in refused["error"]
