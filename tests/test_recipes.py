"""Recipes resolve to the papers' and the notes' numbers; flags override them."""

import json
import math
import re

import keras
import numpy as np
import pytest
from helpers import Interrupt

from keras_resnet import cli
from keras_resnet.errors import ConfigError
from keras_resnet.models import get_spec
from keras_resnet.trainer.config import RECIPES, TrainConfig
from keras_resnet.trainer.data import CifarBatches, Split
from keras_resnet.trainer.data.normalization import NORMALIZATIONS
from keras_resnet.trainer.fit import build_model, learning_rate, train


def test_note_recipe_is_the_notes_run():
    """SPEC.md section 4: ResNet-34, flips only, 0.5/0.5, PyTorch's plateau rule on the loss."""
    config = TrainConfig(recipe="note")
    assert config == TrainConfig(recipe="note") == TrainConfig()
    assert (config.model, config.epochs, config.batch_size) == ("resnet34", 50, 128)
    assert (config.lr, config.momentum, config.weight_decay) == (0.1, 0.9, 5e-4)
    assert (config.schedule, config.lr_patience, config.lr_threshold) == ("torch_plateau", 3, 0.1)
    assert (config.lr_factor, config.min_lr) == (0.1, 0.0)
    assert (config.padding, config.cutout, config.normalization) == (0, 0, "half")
    assert NORMALIZATIONS["half"] == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert config.val_size == 0 and not config.nesterov and config.log_format == "note"


def test_note_recipe_keeps_the_last_partial_batch_391_steps():
    labels = np.arange(50_000, dtype=np.int32) % 10  # CIFAR-10's training set, in shape only
    split = Split(np.zeros((50_000, 32, 32, 3), np.uint8), labels)
    batches = CifarBatches(split, 128, train=True)
    assert len(batches) == 391 and len(batches[390][1]) == 80


def test_note_recipe_model_flips_only_and_normalises_to_minus_one_one():
    config = TrainConfig(recipe="note", model="resnet8")
    model = build_model(config, steps_per_epoch=1)
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3)).astype("float32")
    out = np.asarray(model.get_layer("augment")(images, training=True))
    mirrored = np.all(out == images[:, :, ::-1], axis=(1, 2, 3))
    unchanged = np.all(out == images, axis=(1, 2, 3))
    assert np.all(mirrored | unchanged) and 10 < mirrored.sum() < 54  # no crop, a fair flip
    normalized = np.asarray(model.get_layer("normalize")(np.array([[[[0.0, 127.5, 255.0]]]])))
    np.testing.assert_allclose(normalized, [[[[-1.0, 0.0, 1.0]]]], atol=1e-6)


def test_kuangliu_recipe_is_its_main_py():
    """SPEC.md section 5: ResNet-18, crop + flip, its mean/std, SGD, cosine over 200 epochs."""
    config = TrainConfig(recipe="kuangliu")
    assert (config.model, config.epochs, config.batch_size) == ("resnet18", 200, 128)
    assert (config.lr, config.momentum, config.weight_decay) == (0.1, 0.9, 5e-4)
    assert (config.padding, config.normalization, config.schedule) == (4, "cifar10", "cosine")
    assert NORMALIZATIONS["cifar10"] == ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    assert get_spec(config.model).initializer == "torch" and config.min_lr == 0.0
    schedule = learning_rate(config, steps_per_epoch=391)
    # Constant within an epoch; epoch 100 of 200 is half way down the cosine.
    rates = [float(schedule(step)) for step in (0, 390, 391, 100 * 391, 100 * 391 + 390)]
    assert rates == pytest.approx([0.1, 0.1, 0.1 * (1 + math.cos(math.pi / 200)) / 2, 0.05, 0.05])


def test_paper_recipe_is_section_4_2_with_warm_up_from_resnet110():
    config = TrainConfig(recipe="paper", model="resnet110")
    assert (config.epochs, config.batch_size, config.lr) == (182, 128, 0.1)
    assert (config.momentum, config.weight_decay) == (0.9, 1e-4)
    assert config.schedule == "steps" and config.lr_milestones == (32_000, 48_000)
    assert config.val_size == 5000
    assert (config.warmup_lr, config.warmup_steps) == (0.01, 400)
    # 64k iterations: 182 epochs of ceil(45,000 / 128) = 352 steps.
    assert config.epochs * -(-45_000 // config.batch_size) == pytest.approx(64_000, rel=0.002)


def test_paper_recipe_has_no_warm_up_below_110_layers():
    assert TrainConfig(recipe="paper", model="resnet56").warmup_steps == 0
    assert TrainConfig(recipe="paper", model="preact_resnet164").warmup_steps == 400


def test_flags_override_the_recipe():
    config = TrainConfig(recipe="paper", model="resnet20", epochs=3, warmup_steps=50, val_size=0)
    assert (config.epochs, config.warmup_steps, config.val_size) == (3, 50, 0)
    assert config.weight_decay == 1e-4  # untouched values stay the recipe's


def test_fast_recipe_is_the_tuned_resnet18_run():
    config = TrainConfig(recipe="fast")
    assert (config.model, config.epochs, config.batch_size, config.lr) == ("resnet18", 26, 512, 0.2)
    assert config.nesterov and config.flip_tta and config.precision == "mixed_bfloat16"
    assert (config.schedule, config.warmup_steps) == ("triangular", 490)
    assert (config.label_smoothing, config.cutout, config.weight_decay) == (0.2, 12, 5e-4)
    schedule = learning_rate(config, steps_per_epoch=98)
    rates = [float(schedule(step)) for step in (0, 245, 490, 1519, 26 * 98)]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.1, 0.0], abs=1e-6)


def test_unknown_recipe_names_the_valid_ones():
    with pytest.raises(
        ConfigError, match="recipe must be one of note, paper, fast, kuangliu, got 'fastest'"
    ):
        TrainConfig(recipe="fastest")


def test_paper_schedule_warms_up_then_divides_by_ten_at_32k_and_48k():
    schedule = learning_rate(TrainConfig(recipe="paper", model="resnet110"))
    steps = [0, 400, 401, 32_000, 32_001, 48_000, 48_001, 64_000]
    rates = [float(schedule(step)) for step in steps]
    assert rates == pytest.approx([0.01, 0.01, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_plateau_schedules_are_a_plain_rate_the_callback_can_change():
    assert learning_rate(TrainConfig(recipe="note")) == 0.1
    assert learning_rate(TrainConfig(recipe="paper", schedule="plateau", warmup_steps=0)) == 0.1


def test_the_keras_plateau_schedule_needs_a_validation_split_not_the_test_set():
    with pytest.raises(ConfigError, match="plateau follows the validation accuracy") as info:
        TrainConfig(schedule="plateau")
    assert info.value.parameter == "schedule"
    assert TrainConfig(schedule="plateau", val_size=5000).schedule == "plateau"


def test_warm_up_needs_the_steps_schedule():
    with pytest.raises(ConfigError, match="warmup_steps needs the steps or triangular schedule"):
        TrainConfig(warmup_steps=10, warmup_lr=0.01)


def test_a_constant_warm_up_needs_a_rate_and_a_ramp_may_start_at_zero():
    with pytest.raises(ConfigError, match=r"warmup_lr must be positive .* steps schedule.* 0\.0"):
        TrainConfig(schedule="steps", warmup_steps=10)
    with pytest.raises(ConfigError, match="warmup_steps must be a step count from 0 to"):
        TrainConfig(schedule="triangular", warmup_steps=-1)
    TrainConfig(schedule="triangular", warmup_steps=10)  # from 0 up to lr


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_is_a_valid_configuration(name):
    assert TrainConfig(recipe=name).recipe == name
    assert TrainConfig(recipe=name, model="resnet110").model == "resnet110"


def test_a_config_made_from_a_recipe_name_is_that_recipe():
    """TrainConfig(recipe=...) means what --recipe means: the preset, then what is given."""
    assert TrainConfig(recipe="paper") == TrainConfig(recipe="paper")
    assert TrainConfig(recipe="fast").batch_size == 512
    assert TrainConfig(recipe="paper", model="resnet110").warmup_steps == 400
    assert TrainConfig(recipe="paper", model="resnet20").warmup_steps == 0
    assert TrainConfig(recipe="paper", model="resnet20", warmup_steps=50).warmup_steps == 50


def test_a_saved_config_round_trips_through_json():
    config = TrainConfig(recipe="paper", model="resnet20", epochs=3)
    assert TrainConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_the_fast_recipe_trains_end_to_end(tmp_path):
    """bfloat16, cutout, label smoothing, the triangular warm-up from 0 and flip TTA at once."""
    config = TrainConfig(
        recipe="fast",
        model="tiny_resnet6",
        epochs=2,
        batch_size=64,
        warmup_steps=3,
        synthetic=True,
        train_size=256,
        output_dir=str(tmp_path / "fast"),
    )
    run = train(config, verbose=0)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["flip_tta"] is True and 0 <= metrics["test_accuracy"] <= 1
    history = json.loads((run / "state.json").read_text())["history"]
    assert [row["learning_rate"] for row in history] == pytest.approx([0.0, 0.2 * 4 / 5])
    model = keras.saving.load_model(run / "model.keras")
    assert model.get_layer("augment").cutout == 12
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"


def test_cli_records_the_resolved_recipe_in_config_json(tmp_path, monkeypatch):
    seen = {}

    def fake_train(config, **kwargs):
        seen["config"] = config
        return tmp_path

    monkeypatch.setattr("keras_resnet.trainer.fit.train", fake_train)
    argv = [
        "--recipe",
        "paper",
        "--model",
        "resnet20",
        "--epochs",
        "3",
        "--lr-milestones",
        "5",
        "9",
    ]
    assert cli.train_main(argv) == 0
    config = seen["config"]
    assert (config.recipe, config.epochs, config.lr_milestones) == ("paper", 3, (5, 9))
    assert config.weight_decay == 1e-4 and config.warmup_steps == 0


# End to end: the default run resumes the notes' recipe exactly and unit-tests each schedule.
@pytest.mark.slow
def test_a_step_schedule_run_resumes_to_the_same_weights(tmp_path):
    def config(folder):
        return TrainConfig(
            recipe="paper",
            model="tiny_resnet6",
            epochs=2,
            batch_size=64,
            synthetic=True,
            train_size=256,
            val_size=64,
            lr_milestones=(6,),  # four steps an epoch: the cut falls inside epoch 2
            output_dir=str(tmp_path / folder),
        )

    unbroken = train(config("a"), verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train(config("b"), callbacks=[Interrupt()], verbose=0)
    resumed = train(config("b"), verbose=0)
    a = keras.saving.load_model(unbroken / "model.keras")
    b = keras.saving.load_model(resumed / "model.keras")
    for x, y in zip(a.weights, b.weights, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    assert float(b.optimizer.learning_rate) == pytest.approx(0.01)
    saved = json.loads((resumed / "config.json").read_text())
    assert saved["recipe"] == "paper" and saved["lr_milestones"] == [6]


# End to end: the default run resumes the notes' recipe exactly and unit-tests each schedule.
@pytest.mark.slow
def test_the_kuangliu_recipe_trains_end_to_end_on_its_cosine(tmp_path):
    config = TrainConfig(
        recipe="kuangliu",
        model="tiny_resnet6",
        epochs=2,
        batch_size=64,
        synthetic=True,
        train_size=256,
        output_dir=str(tmp_path / "kuangliu"),
    )
    run = train(config, verbose=0)
    history = json.loads((run / "state.json").read_text())["history"]
    # CosineAnnealingLR(T_max=2): 0.1 for epoch 0, (1 + cos(pi / 2)) / 2 * 0.1 for epoch 1.
    assert [row["learning_rate"] for row in history] == pytest.approx([0.1, 0.05])
    model = keras.saving.load_model(run / "model.keras")
    assert model.get_layer("augment").padding == 4
    assert not (run / "best.keras").exists()  # no validation split, so no model is picked


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(lr_threshold=-0.1), "lr_threshold must be a non-negative number, got -0.1"),
        (dict(normalization="coco"), "normalization must be one of cifar10, half, imagenet, data"),
        (dict(padding=-1), "padding must be an integer from 0 to 64 pixels, got -1"),
        (dict(schedule="cosine", warmup_steps=5), "(cosine has no warm-up)"),
    ],
)
def test_the_new_settings_are_checked_naming_the_field(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        TrainConfig(**overrides)
    assert info.value.parameter == next(k for k in overrides if k != "schedule")
