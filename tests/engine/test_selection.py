"""Training options chosen by an inner leave-one-out over the training identities only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import engine.train as train_module
from engine.selection import Candidate, candidates, parse_selection, select_training_config, selector
from engine.train import TrainConfig, choose_operating_point, loso, predict
from stream.errors import ConfigError
from tests.engine.test_train import CONFIG, NET, data  # noqa: F401  (data is a fixture)

TINY = TrainConfig(epochs=2, batch_size=4, window=32, steps_per_epoch=2, network=NET)
GRID = {"thresholds": [(0.3,), (0.5,)], "min_score": [None]}  # a small grid keeps the runs short


def test_parse_selection_reads_json_lists_in_order() -> None:
    got = parse_selection(["augment=[0, 0.5, 1]", 'option.mil_k=["divisor", "points"]'])
    assert got == {"augment": [0, 0.5, 1], "option.mil_k": ["divisor", "points"]}
    assert parse_selection(None) == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("augment", "expected FIELD="),
        ("=[1, 2]", "expected FIELD="),
        ("augment=0.5", "JSON list of two or more"),
        ("augment=[0.5]", "JSON list of two or more"),
        ("augment=[0.5, 0.5]", "listed twice"),
        ("seed=[0, 1]", "'seed' is not selectable"),
        ("option.=[0, 1]", "not selectable"),
    ],
)
def test_bad_selections_name_the_spec(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_selection([spec])
    assert repr(spec) in str(err.value)


def test_a_field_given_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="augment is given twice"):
        parse_selection(["augment=[0, 1]", "augment=[0.5, 1]"])


def test_candidates_are_every_combination_first_values_first() -> None:
    base = TrainConfig(method="pwes", network=NET, method_options={"class_balance": True})
    offered = candidates(base, parse_selection(["lr=[0.001, 0.0005]", 'option.mil_k=["divisor", "points"]']))
    assert [c.label for c in offered] == [
        'lr=0.001, option.mil_k="divisor"',
        'lr=0.001, option.mil_k="points"',
        'lr=0.0005, option.mil_k="divisor"',
        'lr=0.0005, option.mil_k="points"',
    ]
    assert offered[3].config.lr == 0.0005 and offered[3].config.method_options["mil_k"] == "points"
    assert all(c.config.method_options["class_balance"] is True for c in offered)  # the base's options stay
    assert candidates(base, {})[0].config is base
    clips = candidates(base, parse_selection(["clip_s=[null, 10]"]))  # whole videos or 10 s clips
    assert [c.config.clip_s for c in clips] == [None, 10]


def test_a_candidate_the_configuration_refuses_names_it_and_the_field() -> None:
    with pytest.raises(ConfigError, match=r"candidate augment=3.*augment"):
        candidates(TINY, {"augment": [0, 3]})
    with pytest.raises(ConfigError, match="mil_k"):
        candidates(dataclasses.replace(TINY, method="pwes"), {"option.mil_k": ["divisor", "sometimes"]})


def test_the_inner_leave_one_out_prefers_the_candidate_that_learns(data) -> None:  # noqa: F811
    dataset, features = data
    dataset = dataset.subset(["s1", "s2"])  # two groups: two trainings per candidate
    still = dataclasses.replace(CONFIG, lr=1e-7)  # cannot move in 60 steps
    offered = [Candidate("lr=1e-7", still), Candidate("lr=0.003", CONFIG)]
    chosen = select_training_config(dataset, features, offered, group="subject", grid=GRID, progress=False)
    assert chosen.chosen == 1 and chosen.label == "lr=0.003"
    assert chosen.f1[1] > chosen.f1[0] + 0.2, chosen
    assert set(chosen.scores) == {r.video for r in dataset.videos}
    assert chosen.to_dict()["chosen"] == "lr=0.003" and set(chosen.to_dict()["inner_f1"]) == {
        "lr=1e-7",
        "lr=0.003",
    }
    with pytest.raises(ConfigError, match="no candidate"):
        select_training_config(dataset, features, [], progress=False)


def test_nested_selection_never_sees_the_held_out_subject(data, monkeypatch) -> None:  # noqa: F811
    """Every training of the selection is on the fold's training subjects; the fold trains with
    the winner and an out-of-fold operating point reuses the winner's inner scores."""
    dataset, features = data
    trained_on: list[tuple[set[str], float]] = []
    chosen_on: list[dict] = []
    real_train = train_module.train

    def train_spy(videos, config, *, progress=True):
        trained_on.append(({r.subject for r, _ in videos}, config.lr))
        return real_train(videos, config, progress=progress)

    def tune_spy(videos, scores, base, grid=train_module.OPERATING_GRID, **kwargs):
        chosen_on.append(dict(scores))
        return choose_operating_point(videos, scores, base, grid, **kwargs)

    monkeypatch.setattr(train_module, "train", train_spy)
    monkeypatch.setattr(train_module, "choose_operating_point", tune_spy)
    offered = candidates(TINY, {"lr": [1e-3, 2e-3]})
    result = loso(
        dataset,
        features,
        TINY,
        group="subject",
        folds=1,
        progress=False,
        operating_point="out-of-fold",
        select=selector(features, offered, group="subject", grid=GRID, progress=False),
        grid=GRID,
    )
    assert list(result.folds) == ["s1"]
    # Two candidates x an inner run over {s2, s3}, then the fold's own training: never s1.
    assert [s for s, _ in trained_on] == [{"s3"}, {"s2"}, {"s3"}, {"s2"}, {"s2", "s3"}]
    selection = result.selections["s1"]
    winner = offered[selection.chosen].config
    assert selection.config == winner and result.configs["s1"] == winner and trained_on[-1][1] == winner.lr
    assert chosen_on[-1] == selection.scores  # the fold's point: the winner's out-of-fold scores
    assert {v.split("_")[0] for v in chosen_on[-1]} == {"s2", "s3"}
    # Those scores are the inner networks', not the fold network's.
    fold_net = result.networks["s1"]
    rec = next(r for r in dataset.videos if r.subject == "s2")
    own = predict(fold_net, train_module.build_method("full", fold_net), features[rec.video])[1]
    assert not np.array_equal(own, selection.scores[rec.video][1], equal_nan=True)
    with pytest.raises(ConfigError, match="--select need at least 3 subject groups"):
        loso(
            dataset.subset(["s1", "s2"]), features, TINY, group="subject", select=selector(features, offered)
        )
    with pytest.raises(ConfigError, match="no candidate"):
        selector(features, [])
