"""Triangular: warm-up then linear decay, exact at its corners, traceable and saved with a model.
EpochCosine: PyTorch's CosineAnnealingLR stepped once an epoch, value for value."""

import subprocess
import sys
import textwrap

import jax
import keras
import numpy as np
import pytest

from keras_resnet.losses import SmoothedSparseCrossentropy
from keras_resnet.optimizers import TorchSGD
from keras_resnet.schedules import EpochCosine, Triangular


def lr(schedule, step) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


@pytest.mark.parametrize(
    ("start", "final", "expected"),
    [
        # step:   0     10    20    60    100   101   1000
        (0.0, 0.0, [0.0, 0.2, 0.4, 0.2, 0.0, 0.0, 0.0]),
        (0.1, 0.02, [0.1, 0.25, 0.4, 0.21, 0.02, 0.02, 0.02]),
    ],
)
def test_values_at_key_steps(start, final, expected):
    schedule = Triangular(0.4, total_steps=100, warmup_steps=20, final_lr=final, start_lr=start)
    steps = [0, 10, 20, 60, 100, 101, 1000]
    np.testing.assert_allclose([lr(schedule, s) for s in steps], expected, rtol=1e-6, atol=1e-7)
    # Linear in between: the midpoint of any two neighbouring steps in a phase.
    assert lr(schedule, 35) == pytest.approx((lr(schedule, 34) + lr(schedule, 36)) / 2, rel=1e-5)


def test_corners_are_exact_in_float32():
    schedule = Triangular(0.3, total_steps=97, warmup_steps=13, final_lr=0.007, start_lr=0.011)
    for step, expected in ((0, 0.011), (13, 0.3), (97, 0.007), (500, 0.007)):
        assert lr(schedule, step) == np.float32(expected), step


def test_edges_without_warmup_and_with_warmup_only():
    no_warmup = Triangular(0.4, total_steps=10, warmup_steps=0)
    assert [lr(no_warmup, s) for s in (0, 5, 10, 11)] == pytest.approx([0.4, 0.2, 0.0, 0.0])
    only_warmup = Triangular(0.4, total_steps=10, warmup_steps=10, final_lr=0.01)
    assert [lr(only_warmup, s) for s in (0, 5, 9, 10, 50)] == pytest.approx(
        [0.0, 0.2, 0.36, 0.01, 0.01]
    )


def test_traced_integer_steps_give_float32():
    schedule = Triangular(0.4, total_steps=100, warmup_steps=20)
    steps = np.array([0, 10, 20, 60, 100, 200], dtype=np.int64)
    traced = jax.jit(jax.vmap(schedule))(steps)
    assert traced.dtype == np.float32
    np.testing.assert_allclose(traced, [0.0, 0.2, 0.4, 0.2, 0.0, 0.0], atol=1e-7)
    # As the optimizer calls it: with its int iterations variable.
    optimizer = TorchSGD(schedule)
    optimizer.build([keras.Variable(np.zeros(2, np.float32))])
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == 0.0
    optimizer.iterations.assign(10)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(0.2)


def test_config_round_trip():
    schedule = Triangular(0.4, total_steps=100, warmup_steps=20, final_lr=0.01, start_lr=0.05)
    config = schedule.get_config()
    assert config == {
        "peak_lr": 0.4,
        "total_steps": 100,
        "warmup_steps": 20,
        "final_lr": 0.01,
        "start_lr": 0.05,
    }
    for restored in (
        Triangular.from_config(config),
        keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule)),
    ):
        assert isinstance(restored, Triangular)
        assert restored.get_config() == config
        for step in (0, 7, 20, 55, 100, 130):
            assert lr(restored, step) == lr(schedule, step)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"total_steps": 0}, "total_steps .* got 0"),
        ({"total_steps": -5}, "total_steps .* got -5"),
        ({"total_steps": 10.0}, "total_steps .* got 10.0"),
        ({"warmup_steps": 101}, r"warmup_steps .*\(100\), got 101"),
        ({"warmup_steps": -1}, "warmup_steps .* got -1"),
        ({"peak_lr": -0.1}, "peak_lr .* got -0.1"),
        ({"peak_lr": 0.0}, "peak_lr must be a positive .* got 0.0"),
        ({"final_lr": -1e-3}, "final_lr .* got -0.001"),
        ({"start_lr": -0.5}, "start_lr .* got -0.5"),
        ({"start_lr": float("nan")}, "start_lr .* got nan"),
    ],
)
def test_bad_values_are_named(kwargs, message):
    arguments = {"peak_lr": 0.4, "total_steps": 100, "warmup_steps": 20, **kwargs}
    with pytest.raises(ValueError, match=message):
        Triangular(**arguments)


def test_saved_model_loads_after_importing_only_the_package(tmp_path):
    """A run compiled with the fast recipe's pieces loads back after a bare ``import``."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = rng.integers(0, 4, size=(16,)).astype(np.int32)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    model.compile(
        optimizer=TorchSGD(Triangular(0.4, total_steps=8, warmup_steps=2), nesterov=True),
        loss=SmoothedSparseCrossentropy(label_smoothing=0.2),
    )
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # 2 steps: the peak is next
    path = tmp_path / "model.keras"
    model.save(path)
    code = textwrap.dedent(
        f"""
        import keras, keras_resnet
        model = keras.saving.load_model({str(path)!r})
        schedule = model.optimizer._learning_rate
        print(type(schedule).__name__, schedule.get_config()["total_steps"],
              float(model.optimizer.learning_rate), int(model.optimizer.iterations),
              type(model.loss).__name__, model.loss.label_smoothing)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    name, total, rate, step, loss, smoothing = result.stdout.split()[-6:]
    assert (name, total, step, loss, smoothing) == (
        "Triangular",
        "8",
        "2",
        "SmoothedSparseCrossentropy",
        "0.2",
    )
    assert float(rate) == np.float32(0.4)  # the peak, at step 2


def torch_cosine_rates(initial_lr, t_max, eta_min, epochs) -> list[float]:
    """The rate of each epoch under torch's CosineAnnealingLR, stepped after every epoch."""
    torch = pytest.importorskip("torch")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=initial_lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, t_max, eta_min)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(
    ("initial_lr", "t_max", "eta_min", "epochs"),
    [(0.1, 200, 0.0, 200), (0.1, 7, 0.0, 30), (0.05, 10, 0.001, 25)],
)
def test_epoch_cosine_equals_torchs_cosine_annealing_stepped_each_epoch(
    initial_lr, t_max, eta_min, epochs
):
    expected = torch_cosine_rates(initial_lr, t_max, eta_min, epochs)
    schedule = EpochCosine(initial_lr, steps_per_epoch=3, epochs=t_max, min_lr=eta_min)
    steps = np.arange(3 * epochs)
    got = np.asarray(keras.ops.convert_to_numpy(schedule(steps)), dtype=np.float64)
    # Constant within an epoch, and torch's value for it (float32 against torch's float64).
    np.testing.assert_allclose(got, np.repeat(expected, 3), rtol=2e-6, atol=1e-9)


def test_epoch_cosine_is_accurate_where_the_rate_is_tiny():
    """Epoch 199 of 200: 1 + cos(pi t) would cancel in float32; the rate is still 6.17e-6."""
    rate = lr(EpochCosine(0.1, steps_per_epoch=391, epochs=200), 199 * 391)
    assert rate == pytest.approx(0.1 * (1 + np.cos(np.pi * 199 / 200)) / 2, rel=1e-6)


def test_epoch_cosine_config_round_trip_and_bad_values():
    schedule = EpochCosine(0.1, steps_per_epoch=391, epochs=200, min_lr=1e-4)
    again = EpochCosine.from_config(schedule.get_config())
    assert lr(again, 1234) == lr(schedule, 1234)
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive integer, got 0"):
        EpochCosine(0.1, steps_per_epoch=0, epochs=200)
    with pytest.raises(ValueError, match=r"epochs must be a positive integer, got 2\.5"):
        EpochCosine(0.1, steps_per_epoch=10, epochs=2.5)
