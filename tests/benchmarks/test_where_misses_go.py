"""benchmarks/where_misses_go.py sorts each truth and false alarm into one class, by the
evaluation's own matching."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from stream.intervals import ExpressionType, Interval

ME, MAE = ExpressionType.ME, ExpressionType.MAE


def load():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "where_misses_go.py"
    spec = importlib.util.spec_from_file_location("where_misses_go", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_truth_and_false_alarm_gets_its_class() -> None:
    classify = load().classify
    truths = [
        Interval(0, 9, ME),  # found
        Interval(100, 119, ME),  # typed MaE by a prediction that localises it
        Interval(200, 299, MAE),  # only a fragment overlaps it
        Interval(400, 499, MAE),  # nothing overlaps it
    ]
    predictions = [
        Interval(0, 9, ME, score=0.9),
        Interval(100, 119, MAE, score=0.8),
        Interval(200, 219, MAE, score=0.7),
        Interval(600, 619, ME, score=0.6),  # on background
    ]
    found, alarms = classify(predictions, truths, 0.5)
    assert found == {(ME, "found"): 1, (ME, "mistyped"): 1, (MAE, "mislocalised"): 1, (MAE, "missed"): 1}
    assert alarms == {(MAE, "wrong type"): 1, (MAE, "fragment"): 1, (ME, "background"): 1}
