"""The training recipe end to end on generated data: files, resume, refusals, schedule, logs."""

import json
import re
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import Interrupt

from keras_resnet import cli
from keras_resnet.callbacks import ResumableReduceLROnPlateau
from keras_resnet.errors import ConfigError, DivergedError, ModelFileError
from keras_resnet.errors import RunFolderError as RunError
from keras_resnet.trainer.callbacks import EpochLossSum, NoteLog
from keras_resnet.trainer.config import TrainConfig
from keras_resnet.trainer.fit import train

pytestmark = pytest.mark.usefixtures("quick_figures")  # figures: tests/test_reports.py

RUN_FILES = (
    "model.keras",
    "history.csv",
    "metrics.json",
    "curves.png",
    "confusion_matrix.png",
    "config.json",
    "state.json",
)


def tiny_config(tmp_path, **overrides) -> TrainConfig:
    settings = dict(
        model="tiny_resnet6",
        epochs=1,
        batch_size=64,
        synthetic=True,
        train_size=256,
        output_dir=str(tmp_path / "run"),
    )
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict[int, Path]:
    """Finished one-epoch ``tiny_config`` runs, by validation size (0 and 128); tests copy them."""
    runs = {}
    for val_size in (0, 128):
        config = tiny_config(tmp_path_factory.mktemp(f"finished-{val_size}"), val_size=val_size)
        runs[val_size] = train(config, verbose=0)
        keras.utils.clear_session(free_memory=False)
    return runs


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A two-epoch ``tiny_config`` run stopped by Ctrl-C after its first epoch; tests copy it."""
    config = tiny_config(tmp_path_factory.mktemp("stopped"), epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[Interrupt(0)], verbose=0)
    keras.utils.clear_session(free_memory=False)
    return config.run_dir


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    """A fresh copy of a shared run, where ``tiny_config(tmp_path)`` finds it."""
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def model_weights(path) -> list[np.ndarray]:
    return [np.asarray(w) for w in keras.saving.load_model(path).weights]


def test_one_epoch_run_writes_every_file_and_evaluate_reproduces_its_accuracy(
    tmp_path, capsys, finished
):
    run_dir = finished[0]

    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "best.keras").exists()  # no validation split: nothing to choose on
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "tiny_resnet6" and metrics["epochs"] == 1
    assert len(metrics["confusion_matrix"]) == 10
    assert sum(map(sum, metrics["confusion_matrix"])) == 512  # the synthetic test set
    assert set(metrics["per_class_accuracy"]) == {
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    }  # fmt: skip
    history = (run_dir / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate"
    assert len(history) == 2

    out = tmp_path / "eval"
    code = cli.main(
        ["evaluate", str(run_dir / "model.keras"), "--synthetic", "--output-dir", str(out)]
    )
    assert code == 0
    again = json.loads((out / "model-evaluation.json").read_text())
    assert again["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert again["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-5)
    assert (out / "model-confusion_matrix.png").is_file()
    assert f"{100 * metrics['test_accuracy']:.2f}%" in capsys.readouterr().out


def test_evaluating_a_runs_model_in_place_keeps_the_runs_own_metrics(tmp_path, finished):
    run_dir = copy_of(finished[128], tmp_path)
    before = (run_dir / "metrics.json").read_bytes()
    assert cli.main(["evaluate", str(run_dir / "best.keras"), "--synthetic", "--seed", "1"]) == 0
    assert (run_dir / "metrics.json").read_bytes() == before
    assert (run_dir / "best-evaluation.json").is_file()


def test_interrupted_run_resumes_to_the_same_weights_as_an_unbroken_one(tmp_path, stopped):
    unbroken = train(tiny_config(tmp_path / "a", epochs=2), verbose=0)

    config = tiny_config(tmp_path / "b", epochs=2)
    copy_of(stopped, tmp_path / "b")
    state = json.loads((config.run_dir / "state.json").read_text())
    assert state["epochs_done"] == 1 and not state.get("finished")
    assert not (config.run_dir / "model.keras").exists()
    resumed = train(config, verbose=0)  # the same command again

    for a, b in zip(
        model_weights(unbroken / "model.keras"), model_weights(resumed / "model.keras"), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    history_a = (unbroken / "history.csv").read_text()
    history_b = (resumed / "history.csv").read_text()
    assert history_a == history_b
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["epoch-0002.keras"]


def test_finished_run_is_refused_unless_overwritten_or_extended(tmp_path, finished):
    config = tiny_config(tmp_path)
    copy_of(finished[0], tmp_path)
    with pytest.raises(RunError, match="already holds a finished 1-epoch run"):
        train(config, verbose=0)
    with pytest.raises(RunError, match=r"other settings \(lr: 0.1 -> 0.05\)"):
        train(tiny_config(tmp_path, lr=0.05), verbose=0)
    train(tiny_config(tmp_path, lr=0.05), overwrite=True, verbose=0)
    assert json.loads((config.run_dir / "config.json").read_text())["lr"] == 0.05
    run_dir = train(tiny_config(tmp_path, lr=0.05, epochs=2), verbose=0)
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 2


FLOAT32 = "1.18e-38 to 3.4e+38 (float32)"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(model="resnet19"), "Unknown model 'resnet19'. Did you mean 'resnet18'"),
        (dict(epochs=0), "epochs must be a positive integer, got 0"),
        (dict(batch_size=-1), "batch_size must be a positive integer, got -1"),
        (dict(lr=0.0), f"lr must be a positive number from {FLOAT32}, got 0.0"),
        (dict(lr=float("inf")), f"lr must be a positive number from {FLOAT32}, got inf"),
        (dict(lr=1e-50), f"lr must be a positive number from {FLOAT32}, got 1e-50"),
        (dict(lr=1e39), f"lr must be a positive number from {FLOAT32}, got 1e+39"),
        (dict(weight_decay=-1e-4), "weight_decay must be 0 or a number from 1.18e-38"),
        (dict(warmup_lr=1e-45), "warmup_lr must be 0 or a number from 1.18e-38"),
        (dict(min_lr=0.5), "min_lr must be below lr (0.1), got 0.5"),
        (dict(seed=-1), "seed must be an integer from 0 to 2**32 - 1, got -1"),
        (
            dict(precision="float8"),
            "precision must be one of float32, mixed_bfloat16, got 'float8'",
        ),
        (dict(log_format="json"), "log_format must be one of keras, note, got 'json'"),
        (dict(val_size=-5), "val_size must be 0 or more, got -5"),
    ],
)
def test_bad_settings_are_refused_when_the_config_is_made(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        tiny_config(tmp_path, **overrides)
    assert info.value.parameter == next(iter(overrides))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--weight-decay=-1e-4"], "--weight-decay must be 0 or a number from 1.18e-38"),
        (["--min-lr", "0.5"], "--min-lr must be below lr (0.1), got 0.5"),
        (["--lr", "1e-50"], "--lr must be a positive number from 1.18e-38 to 3.4e+38 (float32)"),
        (
            ["--model", "resnet8", "--train-size", "256", "--batch-size", "257"],
            "--batch-size must be at most the 256 training images, got 257",
        ),
        (
            ["--model", "resnet2O"],
            "--model is invalid: Unknown model 'resnet2O'. Did you mean 'resnet20'?",
        ),
        (["--model", "resnet19"], "--model is invalid: Unknown model 'resnet19'"),
        (["--log-format", "json"], "--log-format must be one of keras, note, got 'json'"),
    ],
)
def test_the_cli_names_the_flag_of_a_bad_setting(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.train_main([*argv, "--synthetic", "--output-dir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_unwritable_output_folder_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RunError, match="is not writable"):
        train(tiny_config(tmp_path, output_dir=str(blocker / "run")), verbose=0)


def test_train_size_larger_than_the_data_is_refused_naming_both_numbers(tmp_path):
    config = tiny_config(tmp_path, train_size=5000)
    with pytest.raises(ConfigError, match=r"train_size must be between 1 and 2048.*got 5000"):
        train(config, verbose=0)
    assert not config.run_dir.exists()  # a refused run leaves no empty folder behind


def test_validation_split_picks_best_keras_and_is_named_in_metrics(finished):
    run_dir = finished[128]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and "best_validation_accuracy" in metrics
    assert (run_dir / "best.keras").is_file()
    assert sum(map(sum, metrics["confusion_matrix"])) == 512  # test set, used once at the end


def test_plateau_cuts_the_rate_after_patience_epochs_and_its_state_survives_restarts():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    plateau = ResumableReduceLROnPlateau(
        monitor="val_accuracy", mode="max", factor=0.1, patience=6, min_lr=1e-4
    )
    plateau.set_model(model)
    plateau.on_train_begin()
    rates = []
    for epoch in range(14):
        plateau.on_epoch_end(epoch, {"val_accuracy": 0.5})  # never improves after epoch 0
        rates.append(float(model.optimizer.learning_rate))
    # Epoch 0 sets the best; the sixth stalled epoch cuts (Keras counts patience this way).
    assert rates[:6] == pytest.approx([0.1] * 6)
    assert rates[6:12] == pytest.approx([0.01] * 6)
    assert rates[12] == pytest.approx(0.001)

    restored = ResumableReduceLROnPlateau(
        state=plateau.state(), monitor="val_accuracy", mode="max", patience=6
    )
    restored.set_model(model)
    restored.on_train_begin()
    assert restored.state() == plateau.state()


def dense_model(lr: float = 0.0) -> keras.Model:
    """A fixed linear classifier; with ``lr=0`` every batch's loss is known in advance."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.set_weights([np.array([[1.0, -1.0], [0.5, 0.0], [0.0, 0.5]]), np.zeros(2)])
    model.compile(
        optimizer=keras.optimizers.SGD(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def batch_means(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
    logits = np.asarray(model(x), dtype=np.float64)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    losses = -log_p[np.arange(len(y)), y]
    return np.array(
        [chunk.mean() for chunk in np.split(losses, range(batch_size, len(y), batch_size))]
    )


class LossSumSeen(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.loss_sum, self.loss = logs["loss_sum"], logs["loss"]


def test_the_epochs_loss_sum_is_pytorchs_sum_of_batch_means_even_with_a_short_last_batch():
    """38 images in batches of 4: nine full batches and one of 2 whose loss is far larger."""
    x = np.random.default_rng(0).normal(size=(38, 3)).astype("float32")
    x[-2:] *= 40  # confidently wrong or right: the last batch's mean is far from the others
    y = (x[:, 0] > 0).astype("int32")
    y[-2:] = 1 - y[-2:]
    model, seen = dense_model(), LossSumSeen()
    expected = batch_means(model, x, y, 4).sum()
    callbacks = [EpochLossSum(4, 38), seen]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
    assert seen.loss_sum == pytest.approx(expected, rel=1e-6)
    # Keras's image-weighted mean times the step count would be visibly off.
    assert abs(seen.loss * 10 - expected) > 0.05 * expected


def test_note_log_prints_the_notes_lines_character_for_character(capsys):
    x = np.random.default_rng(0).normal(size=(42, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = dense_model()
    means = batch_means(model, x, y, 4)
    loss_sum = EpochLossSum(4, 42)
    callbacks = [loss_sum, NoteLog(loss_sum, every=5)]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch: 0"
    assert [line[:9] for line in lines[1:3]] == ["[1,     5", "[1,    10"]  # '[%d, %5d]'
    pattern = r"\[1, +(5|10)\] loss: (\d+\.\d{6}) \|  Acc: (\d+\.\d{3})% \((\d+)/(\d+)\)"
    for line, batches in zip(lines[1:3], (5, 10), strict=True):
        match = re.fullmatch(pattern, line)
        assert match, line
        assert float(match.group(2)) == pytest.approx(means[:batches].sum(), abs=2e-6)
        correct, seen = int(match.group(4)), int(match.group(5))
        assert seen == 4 * batches and float(match.group(3)) == pytest.approx(100 * correct / seen)
    assert re.fullmatch(r"Total loss: \d+\.\d{6}", lines[3]) and len(lines) == 4
    assert float(lines[3].split()[-1]) == pytest.approx(means.sum(), abs=2e-6)


def test_note_log_lines_come_in_order_and_none_after_an_interrupt(capsys):
    x = np.random.default_rng(1).normal(size=(400, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = dense_model(lr=0.1)
    loss_sum = EpochLossSum(4, 400)
    callbacks = [loss_sum, NoteLog(loss_sum, every=1), Interrupt(batch=60)]
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=callbacks)
    print("Interrupted.")
    time.sleep(0.2)  # any batch callback still on Keras's thread pool has finished by now
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "Interrupted."
    numbers = [int(re.match(r"\[1, +(\d+)\]", line).group(1)) for line in lines[1:-1]]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) <= 60


def test_the_note_recipe_prints_the_notes_log_and_closing_lines(tmp_path, capsys):
    """``python train.py`` with a tiny net: the note format by default, no Keras epoch lines."""
    argv = ["--model", "tiny_resnet6", "--synthetic", "--train-size", "256", "--batch-size", "64"]
    assert cli.train_main([*argv, "--epochs", "1", "--output-dir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "Epoch: 0" and re.fullmatch(r"Total loss: \d+\.\d{6}", lines[1])
    assert "Epoch 1/1" not in out
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert lines[1] == f"Total loss: {state['plateau']['best']:.6f}"  # the scheduler's value
    match = re.fullmatch(r"Accuracy of the network on the 512 test images: (\d+) %", lines[2])
    assert match and re.fullmatch(r"Exactly (\d+\.\d\d) % \((\d+)/512\)", lines[3])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert int(match.group(1)) == int(100 * metrics["test_accuracy"])
    per_class = [line for line in lines if re.match(r"Accuracy of +\w+ :", line)]
    assert len(per_class) == 10 and sum(int(line.split("/")[1][:-1]) for line in per_class) == 512


def test_the_torch_plateau_cuts_on_pytorchs_epoch_and_its_count_survives_a_resume(tmp_path, capsys):
    """threshold 0.99: no epoch after the first improves, so patience 1 cuts after epoch 3.
    The run stops after epoch 2; only the restored stalled-epoch count makes epoch 3 cut."""
    config = tiny_config(tmp_path, epochs=3, lr_patience=1, lr_threshold=0.99)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[Interrupt(1)], verbose=0)
    saved = json.loads((config.run_dir / "state.json").read_text())["plateau"]
    assert (saved["num_bad_epochs"], saved["last_epoch"]) == (1, 2)
    capsys.readouterr()
    train(config, verbose=0)
    assert (
        "Epoch     3: reducing learning rate of group 0 to 1.0000e-02." in capsys.readouterr().out
    )
    state = json.loads((config.run_dir / "state.json").read_text())
    assert [row["learning_rate"] for row in state["history"]] == pytest.approx([0.1] * 3)
    assert state["learning_rate"] == pytest.approx(0.01)


def test_cli_refuses_bad_flags_with_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.train_main(["--epochs", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --epochs must be a positive integer, got 0\n"

    with pytest.raises(SystemExit) as exit_info:
        cli.train_main(["--model", "resnet-18", "--synthetic", "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "Unknown model 'resnet-18'" in capsys.readouterr().err


def test_cli_resume_keeps_saved_settings_and_refuses_changes(tmp_path, capsys, finished):
    config = tiny_config(tmp_path)
    copy_of(finished[0], tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.train_main(["--resume", str(config.run_dir), "--lr", "0.5"])
    assert exit_info.value.code == 1
    assert "holds a run with other settings (lr: 0.1 -> 0.5)" in capsys.readouterr().err
    assert cli.train_main(["--resume", str(config.run_dir), "--epochs", "2"]) == 0
    assert json.loads((config.run_dir / "state.json").read_text())["epochs_done"] == 2


def test_mixed_bfloat16_run_trains_and_keeps_the_classifier_in_float32(tmp_path):
    run_dir = train(tiny_config(tmp_path, precision="mixed_bfloat16"), verbose=0)
    model = keras.saving.load_model(run_dir / "model.keras")
    assert model.get_layer("stage1_block0").compute_dtype == "bfloat16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    # BatchNorm runs under the bfloat16 policy but upcasts its statistics to float32 itself.
    assert model.get_layer("stage1_block0").bn1.compute_dtype == "bfloat16"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert np.isfinite(metrics["test_loss"])


def test_missing_dataset_stops_before_the_model_is_built(tmp_path, monkeypatch, capsys):
    import tensorflow_datasets as tfds

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(tfds, "load", offline)
    monkeypatch.setattr("keras_resnet.trainer.data.tfds.check_reachable", lambda url: None)
    monkeypatch.setattr(
        "keras_resnet.trainer.fit.build_model", lambda *args: pytest.fail("model was built")
    )
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(SystemExit) as exit_info:
        cli.train_main(["--data-dir", data_dir, "--output-dir", str(tmp_path / "run")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"data_dir={data_dir!r}" in err and "--synthetic" in err
    assert "ConnectionError: no route to host" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "state, config",
    [
        ("{}", None),
        ("[]", None),
        ('{"epochs_done": 1}', None),
        ("not json", None),
        (None, '{"written_by": "keras_resnet", "lr": "fast"}'),
        (None, '{"written_by": "keras_resnet", "bogus": 1}'),
    ],
)
def test_a_damaged_run_folder_is_named_in_the_error_not_a_traceback(
    tmp_path, finished, state, config
):
    run_config = tiny_config(tmp_path, epochs=2)
    copy_of(finished[0], tmp_path)
    run_dir = run_config.run_dir
    if state is not None:
        (run_dir / "state.json").write_text(state)
    if config is not None:
        (run_dir / "config.json").write_text(config)
    damaged = "state.json" if state is not None else "config.json"
    with pytest.raises(RunError, match=re.escape(str(run_dir / damaged))):
        train(run_config, verbose=0)
    with pytest.raises(SystemExit) as exit_info:
        cli.train_main(["--resume", str(run_dir)])
    assert exit_info.value.code == 1


def test_a_truncated_checkpoint_is_named_when_resuming(tmp_path, stopped):
    config = tiny_config(tmp_path, epochs=2)
    copy_of(stopped, tmp_path)
    checkpoint = (
        config.run_dir / json.loads((config.run_dir / "state.json").read_text())["checkpoint"]
    )
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(
        ModelFileError, match=f"cannot load model {re.escape(repr(str(checkpoint)))}"
    ):
        train(config, verbose=0)


class PoisonWeightsAtEpoch(keras.callbacks.Callback):
    """Makes the loss NaN from the given epoch on, as a diverging run would."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            kernel = self.model.get_layer("predictions").kernel
            kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))


def test_nan_loss_stops_naming_epoch_and_batch_and_keeps_good_files(tmp_path):
    config = tiny_config(tmp_path, epochs=3, val_size=128)
    with pytest.raises(
        DivergedError,
        match=r"NaN or infinite at epoch 2, batch 1; training stopped\. The checkpoint of epoch 1 "
        r"\(.*epoch-0001.keras\) and .*best.keras \(epoch 1\) are kept\.",
    ):
        train(config, callbacks=[PoisonWeightsAtEpoch(1)], verbose=0)
    state = json.loads((config.run_dir / "state.json").read_text())
    assert state["epochs_done"] == 1 and len(state["history"]) == 1
    good = keras.saving.load_model(config.run_dir / state["checkpoint"])
    best = keras.saving.load_model(config.run_dir / "best.keras")
    for model in (good, best):
        assert all(np.isfinite(np.asarray(w)).all() for w in model.weights)
    assert not (config.run_dir / "model.keras").exists()


def test_a_crash_while_saving_a_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, epochs=2)
    real_save = keras.Model.save

    def crash_on_epoch_two(model, path, *args, **kwargs):
        if "epoch-0002" in str(path):  # the temporary file beside checkpoints/epoch-0002.keras
            with open(path, "wb") as f:
                f.write(b"PK\x03\x04 half a zip")
            raise OSError("disk full")
        return real_save(model, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", crash_on_epoch_two)
    with pytest.raises(RunError, match=r"epoch-0002\.keras: disk full"):
        train(config, verbose=0)
    monkeypatch.undo()
    state = json.loads((config.run_dir / "state.json").read_text())
    assert state["checkpoint"] == "checkpoints/epoch-0001.keras"
    assert keras.saving.load_model(config.run_dir / state["checkpoint"]) is not None
    leftovers = [p.name for p in config.run_dir.rglob("*") if p.name.startswith(".")]
    assert leftovers == []  # the lock goes with the run
    run_dir = train(config, verbose=0)  # the same command continues from epoch 1
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 2
