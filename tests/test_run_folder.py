"""The run folder under faults and tampering: damaged state, failed writes, foreign checkpoints,
diverged weights, --overwrite, a second trainer, leftovers of killed runs, file modes."""

import errno
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import stat
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import Interrupt, run_cli

from keras_resnet import cli, models
from keras_resnet.errors import DivergedError, RunFolderError
from keras_resnet.trainer import io, reports
from keras_resnet.trainer.config import TrainConfig
from keras_resnet.trainer.fit import train, warn_about_schedule
from keras_resnet.trainer.resume import resume_state, start
from keras_resnet.trainer.run_folder import RunFolder
from keras_resnet.trainer.state import ResumeState

pytestmark = pytest.mark.usefixtures("quick_figures")  # figures: tests/test_reports.py

models.register("tiny_wide_resnet6", block="basic", depths=(1, 1), widths=(16, 32))


def tiny_config(tmp_path, **overrides) -> TrainConfig:
    settings = dict(
        model="tiny_resnet6",
        epochs=2,
        batch_size=64,
        synthetic=True,
        train_size=256,
        val_size=64,  # so that best.keras is written too
        output_dir=str(tmp_path / "run"),
    )
    return TrainConfig(**{**settings, **overrides})


def state_of(run_dir) -> dict:
    return json.loads((run_dir / "state.json").read_text())


def hidden_files(run_dir) -> list[str]:
    return sorted(p.name for p in run_dir.rglob(".*") if p.name != ".lock")


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A 2-epoch run stopped after its first epoch; tests copy it."""
    config = tiny_config(tmp_path_factory.mktemp("one_epoch"))
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[Interrupt(0)], verbose=0)
    keras.utils.clear_session(free_memory=False)
    return config.run_dir


@pytest.fixture
def stopped(tmp_path, one_epoch) -> TrainConfig:
    """A fresh copy of ``one_epoch`` and the config that continues it."""
    shutil.copytree(one_epoch, tmp_path / "run")
    return tiny_config(tmp_path)


# state.json is checked whole.
def valid_state() -> dict:
    row = {"epoch": 1, "loss": 2.3, "accuracy": 0.1, "val_loss": 2.2, "val_accuracy": 0.2}
    return ResumeState(
        epochs_done=1,
        checkpoint="checkpoints/epoch-0001.keras",
        learning_rate=0.1,
        plateau={"wait": 0, "best": 0.2, "cooldown_counter": 0},
        history=[{**row, "learning_rate": 0.1}],
        best=0.2,
        best_epoch=1,
        seconds=3.5,
    ).to_json()


@pytest.mark.parametrize(
    "plateau",
    [
        None,
        {"wait": 2, "best": 0.5, "cooldown_counter": 0},
        {"best": 0.5, "num_bad_epochs": 1, "cooldown_counter": 0, "last_epoch": 1},
        {"best": float("-inf"), "num_bad_epochs": 0, "cooldown_counter": 0, "last_epoch": 0},
    ],
)
def test_a_valid_state_with_either_plateau_rule_round_trips(tmp_path, plateau):
    data = {**valid_state(), "plateau": plateau}
    data = json.loads(json.dumps(data))
    assert ResumeState.from_json(data, tmp_path / "state.json").to_json() == data


@pytest.mark.parametrize(
    "field, change, reason",
    [
        ("learning_rate", None, "is missing"),
        ("history", None, "is missing"),
        ("history", 3, "must be a list of epoch rows, got 3"),
        ("history", [{"epoch": "one"}], "must be a list of epoch rows"),
        ("history", [], "has 0 rows for 1 epochs"),
        ("plateau", "patient", "must be null or the counters of a plateau rule, got 'patient'"),
        ("plateau", {"wait": "2"}, "must be null or the counters of a plateau rule"),
        ("plateau", {"evil": 1}, "must be null or the counters of a plateau rule"),
        (
            "plateau",
            {"best": 0.5, "num_bad_epochs": 1.5, "cooldown_counter": 0, "last_epoch": 1},
            "must be null or the counters of a plateau rule",
        ),
        ("best", "0.9", "must be a number or null, got '0.9'"),
        ("epochs_done", True, "must be a whole number >= 0, got True"),
        ("seconds", -1, "must be a number >= 0"),
        ("finished", "yes", "must be true or false"),
        ("best_epoch", 7, "is 7, after the last finished epoch"),
        ("checkpoint", "../../other/model.keras", "must be a file checkpoints/epoch-NNNN.keras"),
        ("checkpoint", "/etc/passwd", "must be a file checkpoints/epoch-NNNN.keras"),
        ("checkpoint", "checkpoints/epoch-0003.keras", "is not the checkpoint of epoch 1"),
        ("extra", 1, "is not part of a run's state"),
    ],
)
def test_a_state_of_the_wrong_shape_names_file_field_and_recovery(tmp_path, field, change, reason):
    (tmp_path / "checkpoints").mkdir()
    for epoch in (1, 2):
        (tmp_path / "checkpoints" / f"epoch-000{epoch}.keras").write_bytes(b"")
    data = valid_state()
    if change is None:
        del data[field]
    else:
        data[field] = change
    path = tmp_path / "state.json"
    with pytest.raises(RunFolderError) as info:
        ResumeState.from_json(data, path)
    message = str(info.value)
    assert message.startswith(f"{path} is damaged (field {field!r} ")
    assert reason in message and "\n" not in message
    assert "Start over with --overwrite, or take the last saved epoch from " in message
    assert message.endswith(f"{tmp_path / 'checkpoints' / 'epoch-0002.keras'} (model and "
                            "optimizer; keras_resnet.load_model reads it).")  # fmt: skip


def test_a_damaged_state_ends_the_cli_with_one_line_and_exit_1(stopped, capsys):
    state = state_of(stopped.run_dir)
    state["plateau"] = "patient"
    (stopped.run_dir / "state.json").write_text(json.dumps(state))
    with pytest.raises(SystemExit) as info:
        cli.train_main(["--resume", str(stopped.run_dir)])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "field 'plateau'" in err, err


# The checkpoint a state names is confined to the run's checkpoints/ and must fit config.json.
def test_a_checkpoint_symlinked_out_of_the_run_is_refused_and_kept(stopped, tmp_path):
    outside = tmp_path / "other" / "model.keras"
    outside.parent.mkdir()
    checkpoint = stopped.run_dir / "checkpoints" / "epoch-0001.keras"
    shutil.move(checkpoint, outside)
    checkpoint.symlink_to(outside)
    with pytest.raises(
        RunFolderError,
        match=r"checkpoints \(it holds the symbolic link epoch-0001.keras\)\. Refusing",
    ):
        train(stopped, verbose=0)
    assert outside.is_file() and checkpoint.is_symlink()


def test_a_checkpoint_of_another_architecture_is_refused(stopped):
    other = models.build("tiny_wide_resnet6")
    other.save(stopped.run_dir / "checkpoints" / "epoch-0001.keras")
    with pytest.raises(
        RunFolderError,
        match=r"epoch-0001.keras holds a tiny_wide_resnet6 with .* but .*config.json is a "
        r"tiny_resnet6 run",
    ):
        train(stopped, verbose=0)


def test_a_tampered_checkpoint_path_never_touches_the_file_it_names(stopped, tmp_path):
    outside = tmp_path / "other" / "model.keras"
    outside.parent.mkdir()
    shutil.copy(stopped.run_dir / "checkpoints" / "epoch-0001.keras", outside)
    state = state_of(stopped.run_dir)
    state["checkpoint"] = "../../other/model.keras"
    (stopped.run_dir / "state.json").write_text(json.dumps(state))
    with pytest.raises(RunFolderError, match="field 'checkpoint'"):
        train(stopped, verbose=0)
    assert outside.is_file()


# Failed writes: one line naming the path and the cause; nothing saved is lost; the same
# command continues once the cause is gone.
def fail_fsync_of(name: str, code: int):
    """An ``os.fsync`` that fails with ``code`` for files whose final name is ``name``: the
    disk filling up while that file is written (its temporary is ``.stem-XXXX.suffix``)."""
    real_fsync = os.fsync
    stem, suffix = os.path.splitext(name)

    def fsync(fd):
        target = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if target.startswith(f".{stem}-") and target.endswith(suffix):
            raise OSError(code, os.strerror(code))
        return real_fsync(fd)

    return fsync


@pytest.mark.parametrize(
    "name, path",
    [
        ("epoch-0002.keras", "checkpoints/epoch-0002.keras"),
        ("state.json", "state.json"),
        pytest.param("history.csv", "history.csv", marks=pytest.mark.slow),
        pytest.param("model.keras", "model.keras", marks=pytest.mark.slow),
        pytest.param("metrics.json", "metrics.json", marks=pytest.mark.slow),
    ],
)
def test_a_full_disk_while_writing_ends_in_one_line_and_the_run_continues_later(
    stopped, monkeypatch, name, path
):
    before = state_of(stopped.run_dir)
    monkeypatch.setattr(os, "fsync", fail_fsync_of(name, errno.ENOSPC))
    with pytest.raises(RunFolderError) as info:
        train(stopped, verbose=0)
    monkeypatch.undo()
    assert str(info.value).startswith(
        f"cannot write {stopped.run_dir / path}: No space left on device. Nothing saved before "
        "is lost"
    )
    assert hidden_files(stopped.run_dir) == []
    done = state_of(stopped.run_dir)["epochs_done"]
    assert done == (1 if name in ("epoch-0002.keras", "state.json") else 2)
    if done == 1:
        assert state_of(stopped.run_dir) == before
        assert (stopped.run_dir / before["checkpoint"]).is_file()

    run_dir = train(stopped, verbose=0)
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 2
    assert len((run_dir / "history.csv").read_text().splitlines()) == 3
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["epoch-0002.keras"]


def test_a_file_size_limit_ends_in_one_line_and_the_run_continues_later(stopped):
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))  # smaller than a checkpoint
    try:
        with pytest.raises(RunFolderError, match="File too large") as info:
            train(stopped, verbose=0)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert re.match(r"cannot write \S+\.keras: File too large\.", str(info.value))
    assert hidden_files(stopped.run_dir) == []
    assert state_of(stopped.run_dir)["epochs_done"] == 1
    run_dir = train(stopped, verbose=0)
    assert state_of(run_dir)["epochs_done"] == 2


@pytest.mark.parametrize(
    "name",
    [
        "model.keras",
        *(pytest.param(n, marks=pytest.mark.slow) for n in ("best.keras", "history.csv")),
    ],
)
def test_a_folder_in_place_of_a_run_file_is_named_and_the_run_continues_later(stopped, name):
    state = state_of(stopped.run_dir)
    state["best"] = 0.0  # so that epoch 2 improves on it and writes best.keras
    (stopped.run_dir / "state.json").write_text(json.dumps(state))
    blocker = stopped.run_dir / name
    if blocker.exists():
        blocker.unlink()
    blocker.mkdir()
    with pytest.raises(RunFolderError, match=re.escape(f"{name} (not a regular file). Refusing")):
        train(stopped, verbose=0)
    assert hidden_files(stopped.run_dir) == [] and blocker.is_dir()
    blocker.rmdir()
    run_dir = train(stopped, verbose=0)
    assert (run_dir / name).is_file()
    assert state_of(run_dir)["finished"]


def test_a_file_in_place_of_checkpoints_is_named_and_a_fresh_run_starts_later(tmp_path, capsys):
    config = tiny_config(tmp_path, epochs=1)
    config.run_dir.mkdir()
    (config.run_dir / "checkpoints").write_text("not a folder")
    with pytest.raises(SystemExit) as info:
        cli.train_main(
            ["--model", "tiny_resnet6", "--epochs", "1", "--batch-size", "64", "--synthetic",
             "--train-size", "256", "--output-dir", str(config.run_dir)]
        )  # fmt: skip
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{config.run_dir} holds files that no keras_resnet run wrote (it has no " in err
    assert (config.run_dir / "checkpoints").read_text() == "not a folder"
    (config.run_dir / "checkpoints").unlink()
    assert state_of(train(config, verbose=0))["finished"]


# Diverged weights are never saved, and a stop says what really exists.
class PoisonMomentumAtEpochEnd(keras.callbacks.Callback):
    """Make an optimizer variable infinite on the last batch of ``epoch``: the weights of the
    checkpoint diverge while the epoch's loss and accuracy stay finite."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.params["steps"] - 1:
            variable = self.model.optimizer.variables[-1]
            variable.assign(np.full(variable.shape, np.inf, dtype=variable.dtype))


def test_weights_that_diverge_under_a_finite_loss_are_never_saved(tmp_path):
    config = tiny_config(tmp_path)
    with pytest.raises(
        DivergedError,
        match=r"The weights became NaN or infinite in epoch 2 \(.*\); nothing of that epoch is "
        r"saved\. The checkpoint of epoch 1 .* are kept\.",
    ):
        train(config, callbacks=[PoisonMomentumAtEpochEnd(1)], verbose=0)
    assert state_of(config.run_dir)["epochs_done"] == 1
    assert not (config.run_dir / "model.keras").exists()
    assert [p.name for p in (config.run_dir / "checkpoints").iterdir()] == ["epoch-0001.keras"]


def test_a_huge_learning_rate_ends_diverged_with_nothing_saved(tmp_path, capsys):
    config = tiny_config(tmp_path, lr=1e6)
    with pytest.raises(DivergedError) as info:
        train(config, verbose=0)
    assert str(info.value).endswith(
        f"No epoch had finished, so no model was saved in {config.run_dir}. Try a lower --lr "
        "with --overwrite or another --output-dir."
    )
    assert sorted(p.name for p in config.run_dir.iterdir()) == ["config.json"]


def test_a_warm_up_or_milestone_beyond_the_run_is_warned_about_naming_the_numbers(capsys):
    config = TrainConfig(
        model="resnet8", epochs=2, schedule="steps", warmup_lr=0.01, warmup_steps=10**9,
        lr_milestones=(3, 50),
    )  # fmt: skip
    warn_about_schedule(config, steps_per_epoch=4)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "warning: --warmup-steps 1000000000 is beyond the end of training: the whole run is "
        "8 steps (2 epochs of 4), so the learning rate never reaches --lr 0.1.",
        "warning: --lr-milestones 50 never take effect: the whole run is 8 steps (2 epochs of 4).",
    ]
    warn_about_schedule(TrainConfig(model="resnet8", schedule="steps", lr_milestones=(3,)), 4)
    assert capsys.readouterr().err == ""


# --overwrite, and running the same command again.
def test_an_interrupted_overwrite_run_continues_when_the_same_command_runs_again(stopped, capsys):
    old_images = RunFolder(stopped.run_dir).decoded_path
    old_images.write_bytes(b"the old run's decoded images")
    new = tiny_config(stopped.run_dir.parent, lr=0.05)
    with pytest.raises(KeyboardInterrupt):
        train(new, overwrite=True, callbacks=[Interrupt(0)], verbose=0)
    assert f"Replacing the run in {new.run_dir}." in capsys.readouterr().out
    assert not old_images.exists()
    assert state_of(new.run_dir)["epochs_done"] == 1
    train(new, overwrite=True, verbose=0)  # the same command again
    assert f"Resuming {new.run_dir} after epoch 1." in capsys.readouterr().out
    assert state_of(new.run_dir)["epochs_done"] == 2
    assert json.loads((new.run_dir / "config.json").read_text())["lr"] == 0.05


def test_an_overwrite_killed_in_its_first_epoch_leaves_nothing_of_the_old_run(stopped, capsys):
    new = tiny_config(stopped.run_dir.parent, lr=0.05)
    with pytest.raises(KeyboardInterrupt):
        train(new, overwrite=True, callbacks=[Interrupt(0, batch=0, after_batch=True)], verbose=0)
    assert sorted(p.name for p in stopped.run_dir.iterdir()) == ["config.json"]
    capsys.readouterr()
    train(new, verbose=0)  # the same settings, without --overwrite
    assert "Resuming" not in capsys.readouterr().out
    assert json.loads((new.run_dir / "config.json").read_text())["lr"] == 0.05
    assert [row["learning_rate"] for row in state_of(new.run_dir)["history"]] == [
        pytest.approx(0.05)
    ] * 2


# One trainer per folder.
def test_a_second_trainer_on_a_locked_folder_gets_one_line_and_exit_1(stopped, capsys):
    with RunFolder(stopped.run_dir).locked(), pytest.raises(SystemExit) as info:
        cli.train_main(["--resume", str(stopped.run_dir)])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: {stopped.run_dir} is in use by another training run (process {os.getpid()}); "
        "wait for it to end, or use another --output-dir\n"
    )
    assert state_of(stopped.run_dir)["epochs_done"] == 1


# What killed runs leave behind is removed on the next start.
def test_temporary_files_and_orphaned_checkpoints_are_removed_on_the_next_start(stopped):
    run_dir = stopped.run_dir
    leftovers = [
        run_dir / ".model-a1b2c3d4.keras",
        run_dir / ".state-x9_k0m1n.json",
        run_dir / ".history-qqqqqqqq.csv",
        run_dir / ".write-test-2b4d6f8h",
        run_dir / ".decoded-images-m0n1o2p3.npy",  # a cache file killed as it was made
        run_dir / "checkpoints" / ".epoch-0002-zz00zz00.keras",
        run_dir / "checkpoints" / "epoch-0000.keras",
    ]
    for path in leftovers:
        path.write_bytes(b"half")
    (run_dir / ".replaced-k3l4m5n6").mkdir()
    (run_dir / ".replaced-k3l4m5n6" / "state.json").write_text("{}")
    # Only what a run leaves: names like them, but not of that form, are the user's.
    keep = [run_dir / "notes.txt", run_dir / ".model-backup.keras", run_dir / ".replaced-mine"]
    for path in keep:
        path.write_text("mine")
    (run_dir / ".replaced-abcdefgh").mkdir()
    (run_dir / ".replaced-abcdefgh" / "thesis.tex").write_text("mine")
    train(stopped, verbose=0)
    assert hidden_files(run_dir) == [".model-backup.keras", ".replaced-abcdefgh", ".replaced-mine"]
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["epoch-0002.keras"]
    keep.append(run_dir / ".replaced-abcdefgh" / "thesis.tex")
    assert all(path.read_text() == "mine" for path in keep)


def test_run_files_get_the_mode_the_umask_implies(tmp_path):
    old = os.umask(0o027)
    try:
        run_dir = train(tiny_config(tmp_path, epochs=1), verbose=0)
    finally:
        os.umask(old)
    for name in ("config.json", "state.json", "metrics.json", "model.keras", "best.keras",
                 "history.csv", "curves.png", "checkpoints/epoch-0001.keras"):  # fmt: skip
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o640, name


# Nothing outside the run, and nothing of the user's, is ever written or deleted.
TINY_RUN = ["--model", "tiny_resnet6", "--epochs", "1", "--batch-size", "64", "--synthetic",
            "--train-size", "256"]  # fmt: skip


def digests(*roots) -> dict[str, str]:
    """Every file and link under ``roots`` (links not followed), with its content's SHA-256."""
    found = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            if path.is_symlink():
                found[str(path)] = f"link to {os.readlink(path)}"
            elif path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_a_symlinked_lock_is_never_written_through(tmp_path, capsys):
    victim = tmp_path / "v.txt"
    victim.write_text("precious")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").symlink_to(victim)
    before = digests(victim, run_dir)
    code, _, err = run_cli(capsys, "train", *TINY_RUN, "--output-dir", str(run_dir))
    assert code == 1 and err.count("\n") == 1, err
    assert f"cannot use {run_dir / '.lock'} as the run's lock: a symbolic link" in err
    assert digests(victim, run_dir) == before


@pytest.mark.parametrize("folder", ["checkpoints", "tensorboard"])
@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_a_run_folder_linked_outside_is_refused_before_anything_there_is_touched(
    stopped, tmp_path, capsys, folder, resume
):
    outside = tmp_path / "o"
    outside.mkdir()
    (outside / "epoch-0001.keras").write_bytes(b"not yours to delete")
    (outside / "epoch-0005.keras").write_bytes(b"nor this")
    run_dir = stopped.run_dir
    if not resume:
        shutil.rmtree(run_dir)
        run_dir.mkdir()
    elif (run_dir / folder).exists():
        shutil.rmtree(run_dir / folder)
    (run_dir / folder).symlink_to(outside, target_is_directory=True)
    for err in refusals_with_and_without_overwrite(capsys, run_dir, outside):
        assert f"{run_dir} holds files that no keras_resnet run wrote" in err
        assert folder in err and "Refusing to replace them" in err


def refusals_with_and_without_overwrite(capsys, run_dir: Path, outside: Path) -> list[str]:
    """The one-line errors of training into ``run_dir`` without and with ``--overwrite``, each
    refused (exit 1) with ``outside`` and the folder unchanged."""
    before, errors = digests(outside, run_dir), []
    for overwrite in ([], ["--overwrite"]):
        code, _, err = run_cli(
            capsys, "train", *TINY_RUN, "--val-size", "64", "--epochs", "2",
            "--output-dir", str(run_dir), *overwrite,
        )  # fmt: skip
        assert code == 1 and err.count("\n") == 1, err
        assert digests(outside, run_dir) == before
        errors.append(err)
    return errors


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_a_decoded_images_file_linked_elsewhere_is_refused_and_never_written_through(
    stopped, tmp_path, capsys, resume
):
    victim = tmp_path / "victim.npy"
    victim.write_bytes(b"not yours to fill")
    run_dir = stopped.run_dir
    if not resume:
        shutil.rmtree(run_dir)
        run_dir.mkdir()
    RunFolder(run_dir).decoded_path.symlink_to(victim)
    named = " (a symbolic link)" if resume else ". Refusing"  # fresh: not a run of ours
    for err in refusals_with_and_without_overwrite(capsys, run_dir, victim):
        assert "no keras_resnet run wrote" in err and f"decoded-images.npy{named}" in err


USERS_OWN = {
    "config": {"config.json": '{"learning_rate": 3e-4, "layers": 12}'},
    "model": {"model.keras": "my own model"},
    "history": {"history.csv": "epoch,loss\n1,0.5\n"},
    "tensorboard": {"tensorboard/mine.txt": "my logs"},
    "model_folder": {"model.keras/weights.bin": "mine"},
    "best_and_metrics": {"best.keras": "mine", "metrics.json": "{}"},
    "decoded_images": {"decoded-images.npy": "my own array"},
}


@pytest.mark.parametrize("files", USERS_OWN.values(), ids=USERS_OWN)
@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_a_folder_of_the_user_s_own_files_is_refused_and_left_byte_identical(
    tmp_path, capsys, files, overwrite
):
    project = tmp_path / "project"
    for name, text in {**files, "README.md": "my project", "src/main.py": "print(1)"}.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    before = digests(project)
    code, out, err = run_cli(
        capsys, "train", *TINY_RUN, "--output-dir", str(project),
        *(["--overwrite"] if overwrite else []),
    )  # fmt: skip
    assert code == 1 and err.count("\n") == 1, err
    assert f"{project} holds files that no keras_resnet run wrote" in err
    for name in files:
        assert name.split("/")[0] in err
    assert "Replacing" not in out
    assert digests(project) == before


def test_a_finished_run_whose_state_was_lost_is_replaced_only_with_overwrite(stopped, capsys):
    run_dir = train(stopped, verbose=0)
    (run_dir / "state.json").unlink()
    before = digests(run_dir)
    args = [*TINY_RUN, "--val-size", "64", "--epochs", "2", "--output-dir", str(run_dir)]
    code, out, err = run_cli(capsys, "train", *args)
    assert code == 1 and "holds a run whose state.json is missing (metrics.json" in err, err
    assert digests(run_dir) == before
    code, out, err = run_cli(capsys, "train", *args, "--overwrite")
    assert code == 0, err
    assert f"Replacing the run in {run_dir}." in out
    assert state_of(run_dir)["finished"]


def test_a_run_into_the_current_folder_of_a_project_writes_only_its_own_files(
    tmp_path, capsys, monkeypatch
):
    project = tmp_path / "project"
    for name in ("README.md", "src/main.py", ".config-old.json", "checkpoint-notes.txt"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(f"the user's {name}")
    before = digests(project)
    monkeypatch.chdir(project)
    code, _, err = run_cli(capsys, "train", *TINY_RUN, "--output-dir", ".")
    assert code == 0, err
    after = digests(project)
    assert {k: after[k] for k in before} == before
    ours = {Path(p).relative_to(project).parts[0] for p in set(after) - set(before)}
    assert ours <= {"config.json", "state.json", "metrics.json", "history.csv", "model.keras",
                    "curves.png", "confusion_matrix.png", "checkpoints"}  # fmt: skip
    assert not (project / ".lock").exists()


@pytest.mark.parametrize("name", ["state.json", "config.json"])
def test_json_nested_too_deeply_is_named_as_damage_in_one_line(stopped, capsys, name):
    (stopped.run_dir / name).write_text("[" * 200_000 + "]" * 200_000)
    code, _, err = run_cli(capsys, "train", "--resume", str(stopped.run_dir))
    assert code == 1 and err.count("\n") == 1, err
    assert f"{stopped.run_dir / name} is damaged (nested too deeply to read)" in err


def test_a_plateau_state_of_another_schedule_is_named_as_damage(stopped):
    state = state_of(stopped.run_dir)
    state["plateau"] = {"wait": 0, "best": 0.1, "cooldown_counter": 0}  # Keras's rule's
    (stopped.run_dir / "state.json").write_text(json.dumps(state))
    with pytest.raises(RunFolderError, match="holds the counters of another schedule"):
        train(stopped, verbose=0)


def test_a_refused_init_from_leaves_no_folder_and_no_lock(tmp_path, capsys):
    model_file = tmp_path / "not-a-model.keras"
    model_file.write_text("text")
    run_dir = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "train", *TINY_RUN, "--init-from", str(model_file), "--output-dir", str(run_dir)
    )
    assert code == 1 and "not-a-model.keras" in err, err
    assert not run_dir.exists()


def sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_while_the_figures_are_drawn_exits_143_and_the_same_command_finishes(
    tmp_path, capsys, monkeypatch
):
    run_dir = tmp_path / "run"
    args = [*TINY_RUN, "--output-dir", str(run_dir)]
    with monkeypatch.context() as patch:
        patch.setattr(reports, "plot_curves", lambda *args: sigterm())
        code, out, err = run_cli(capsys, "train", *args)
    assert code == 143, err
    assert f"The checkpoint of epoch 1 ({run_dir / 'checkpoints' / 'epoch-0001.keras'}) is " in out
    assert f"Resume with: python train.py --resume {run_dir}" in out
    assert "Traceback" not in err and not state_of(run_dir)["finished"]
    code, out, err = run_cli(capsys, "train", *args)
    assert code == 0, err
    assert state_of(run_dir)["finished"] and (run_dir / "curves.png").is_file()


def test_a_stop_while_the_first_checkpoint_is_a_temporary_file_says_nothing_is_saved(
    tmp_path, capsys, monkeypatch
):
    save_atomically = io.save_atomically

    def signal_once_written(path, save):
        def save_then_signal(tmp):
            save(tmp)
            if "epoch-" in str(path):
                sigterm()

        save_atomically(path, save_then_signal)

    monkeypatch.setattr(io, "save_atomically", signal_once_written)
    run_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", *TINY_RUN, "--output-dir", str(run_dir))
    assert code == 143, err
    assert f"Interrupted. No epoch had finished, so no model was saved in {run_dir}." in out
    assert not (run_dir / "state.json").exists() and hidden_files(run_dir) == []


def test_a_run_killed_while_saving_epoch_1_starts_again_but_a_lost_state_is_refused(tmp_path):
    config = tiny_config(tmp_path)
    run = RunFolder(config.run_dir)
    config.run_dir.mkdir()
    start(run, config)
    (config.run_dir / "checkpoints").mkdir()
    for name in ("best.keras", "checkpoints/epoch-0001.keras", "decoded-images.npy"):
        (config.run_dir / name).write_bytes(b"epoch 1")  # all written before state.json
    assert resume_state(run, config, overwrite=False) is None  # the same command starts again
    (config.run_dir / "history.csv").write_text("written after state.json")
    with pytest.raises(RunFolderError, match=r"whose state.json is missing \(history.csv\)"):
        resume_state(run, config, overwrite=False)
    assert resume_state(run, config, overwrite=True) is None
