"""The notes' experiments end to end on generated data, including a restart mid-study."""

import csv

import pytest

from keras_resnet import cli
from keras_resnet.trainer import experiments, reports
from keras_resnet.trainer.fit import train as real_train

FLAGS = dict(epochs=1, train_size=128, batch_size=64, synthetic=True)


def read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # trains eight small runs, twice
def test_degradation_restarts_where_it_stopped_and_writes_figure_and_table(tmp_path, monkeypatch):
    calls, stopped = [], []

    def stop_on_second_model(config, **kwargs):
        calls.append(config.model)
        if len(calls) == 2 and not stopped:
            stopped.append(config.model)
            raise KeyboardInterrupt
        return real_train(config, **kwargs)

    monkeypatch.setattr(experiments, "train", stop_on_second_model)
    with pytest.raises(KeyboardInterrupt):
        experiments.degradation((8, 14), tmp_path, **FLAGS)
    assert calls == ["plain8", "resnet8"]

    calls.clear()
    experiments.degradation((8, 14), tmp_path, **FLAGS)
    assert calls == ["resnet8", "plain14", "resnet14"]  # plain8 was finished and is reused

    rows = read_csv(tmp_path / "degradation.csv")
    assert [(r["depth"], r["kind"], r["model"]) for r in rows] == [
        ("8", "plain", "plain8"),
        ("8", "residual", "resnet8"),
        ("14", "plain", "plain14"),
        ("14", "residual", "resnet14"),
    ]
    for row in rows:
        assert 0 <= float(row["train_error"]) <= 100 and 0 <= float(row["test_error"]) <= 100
    assert (tmp_path / "degradation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The depth study over the same folder reuses every finished model.
    calls.clear()
    experiments.depth(("resnet8", "resnet14"), tmp_path, **FLAGS)
    assert calls == []
    depth_rows = read_csv(tmp_path / "depth.csv")
    assert [(r["model"], r["depth"], r["paper_test_error"]) for r in depth_rows] == [
        ("resnet8", "8", ""),
        ("resnet14", "14", ""),
    ]


def test_unknown_model_is_refused_before_anything_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "train", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match="Unknown model 'resnet21'"):
        experiments.depth(("resnet20", "resnet21"), tmp_path, **FLAGS)


def test_the_cli_passes_the_studys_flags_through(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(
        experiments, "degradation", lambda *args, **flags: seen.update(args=args, flags=flags)
    )
    argv = [
        "experiment",
        "degradation",
        "--depths",
        "20",
        "56",
        "--epochs",
        "3",
        "--train-size",
        "500",
    ]
    assert cli.main([*argv, "--synthetic", "--output-dir", str(tmp_path)]) == 0
    assert seen["args"] == ([20, 56], tmp_path, "paper")
    assert seen["flags"] == {"epochs": 3, "train_size": 500, "synthetic": True}


def test_depth_figure_shows_the_papers_numbers(tmp_path):
    rows = [
        {"model": "resnet20", "depth": 20, "test_error": 9.1, "paper_test_error": 8.75},
        {"model": "resnet56", "depth": 56, "test_error": 7.2, "paper_test_error": 6.97},
    ]
    reports.plot_depth(rows, tmp_path / "depth.png")
    assert (tmp_path / "depth.png").stat().st_size > 10_000
    assert experiments.PAPER_TEST_ERROR[110] == 6.43
