"""TorchReduceLROnPlateau against torch.optim.lr_scheduler.ReduceLROnPlateau itself."""

import json
import types

import keras
import numpy as np
import pytest

from keras_resnet import TorchReduceLROnPlateau

torch = pytest.importorskip("torch")

# "Total loss:" after each of the 50 epochs of the notes' log (the seed's training run,
# lines 342-588 of seed/000_a7ee82ea01dc014c.txt): the value the notes passed to scheduler.step.
# fmt: off
NOTES_TOTAL_LOSSES = (
    436.702453, 357.071455, 286.139592, 240.281207, 215.950420, 194.453984, 181.198413,
    168.756287, 158.876436, 151.007361, 145.488317, 137.913376, 135.173613, 129.670478,
    126.196716, 123.906554, 118.733271, 116.597480, 115.314192, 112.072869, 51.213734,
    27.305064, 19.189702, 13.315432, 9.023635, 5.932488, 4.153865, 3.153302, 2.471666,
    1.972135, 1.586358, 1.342172, 1.273002, 1.069014, 0.962418, 0.835531, 0.800073, 0.768444,
    0.769075, 0.711841, 0.783890, 0.740863, 0.738950, 0.684271, 0.664923, 0.632136, 0.619973,
    0.619886, 0.643087, 0.606150,
)
# fmt: on
NOTES_RULE = {"threshold": 0.1, "patience": 3}
STEPS = 391  # the notes' batches per epoch
# torch.optim's verbose line up to torch 1.x (the notes' version); torch 2.13 no longer prints.
TORCH_VERBOSE_LINE = "Epoch {:5d}: reducing learning rate of group {} to {:.4e}."


def attach(callback, lr=0.1, steps=None):
    """Give the callback a stand-in model holding a Keras optimizer, as fit() would."""
    callback.set_model(types.SimpleNamespace(optimizer=keras.optimizers.SGD(lr)))
    callback.set_params({"epochs": 1, "steps": steps})
    callback.on_train_begin()
    return callback


def keras_rates(callback, values, first_epoch=0, key="loss"):
    rates = []
    for epoch, value in enumerate(values, start=first_epoch):
        callback.on_epoch_end(epoch, {key: value})
        rates.append(float(callback.model.optimizer.learning_rate.numpy()))
    return rates


def torch_rates(values, lr=0.1, **kwargs):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **kwargs)
    rates = []
    for value in values:
        scheduler.step(value)
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


def cut_epochs(rates, lr):
    """1-based epochs after which the rate changed, seen in float32 as Keras holds it."""
    rates = np.float32([lr, *rates])
    return [int(e) for e in np.flatnonzero(rates[1:] != rates[:-1]) + 1]


def random_case(rng):
    kwargs = {
        "mode": str(rng.choice(["min", "max"])),
        "threshold_mode": str(rng.choice(["rel", "abs"])),
        "factor": float(rng.choice([0.0, 0.1, 0.5, 0.9, rng.uniform(0.05, 0.95)])),
        "patience": int(rng.integers(0, 6)),
        "threshold": float(rng.choice([0.0, 1e-4, 0.05, rng.uniform(0, 0.3)])),
        "cooldown": int(rng.integers(0, 4)),
        "min_lr": float(rng.choice([0.0, 1e-4, 2e-3, 0.03])),
        # Not 3e-3: with lr 0.05 and min_lr 2e-3 a cut of exactly eps would come up, which
        # float32 and float64 rates decide differently (0.005f - 0.002 < 3e-3 < 0.005 - 0.002).
        "eps": float(rng.choice([1e-8, 1e-5, 3.3e-3])),
    }
    n = int(rng.integers(1, 60))
    steps = rng.normal(-0.02, 0.1, size=n)
    steps[rng.random(n) < 0.2] = 0.0  # exact ties: "not better" must hold for equal values
    values = np.exp(np.cumsum(steps)) * rng.choice([1e-3, 1.0, 400.0])
    if rng.random() < 0.3:
        values = -values  # negative metrics flip the sense of a relative threshold
    lr = float(rng.choice([0.1, 1.0, 0.05, rng.uniform(1e-3, 1)]))
    return kwargs, [float(v) for v in values], lr


CASES = 200


@pytest.mark.parametrize("seed", range(4))
def test_random_sequences_and_arguments_cut_like_torch(seed):
    rng = np.random.default_rng(seed)
    for _ in range(CASES // 4):
        kwargs, values, lr = random_case(rng)
        expected = torch_rates(values, lr, **kwargs)
        got = keras_rates(attach(TorchReduceLROnPlateau(**kwargs), lr), values)
        assert cut_epochs(got, lr) == cut_epochs(expected, lr), (kwargs, values, lr)
        np.testing.assert_allclose(got, np.float32(expected), rtol=1e-6, err_msg=str(kwargs))


def test_notes_total_losses_cut_after_epochs_20_44_and_50_as_in_torch():
    callback = attach(TorchReduceLROnPlateau(**NOTES_RULE))
    rates = keras_rates(callback, NOTES_TOTAL_LOSSES)
    assert cut_epochs(rates, 0.1) == [20, 44, 50]
    assert cut_epochs(torch_rates(NOTES_TOTAL_LOSSES, **NOTES_RULE), 0.1) == [20, 44, 50]
    np.testing.assert_allclose(rates[-1], 1e-4, rtol=1e-6)


@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
def test_epoch_sum_steps_with_mean_times_steps_as_the_notes_stepped_torch(threshold_mode):
    means = [total / STEPS for total in NOTES_TOTAL_LOSSES]
    kwargs = {"threshold_mode": threshold_mode, "threshold": 0.03, "patience": 2}
    callback = attach(TorchReduceLROnPlateau(epoch_sum=True, **kwargs), steps=STEPS)
    rates = keras_rates(callback, means)
    expected = torch_rates([m * STEPS for m in means], **kwargs)
    assert cut_epochs(rates, 0.1) == cut_epochs(expected, 0.1)
    assert callback.last_value == means[-1] * STEPS
    # An absolute threshold is what makes the scale matter: on the means it cuts elsewhere.
    on_means = cut_epochs(torch_rates(means, **kwargs), 0.1)
    assert (on_means == cut_epochs(expected, 0.1)) == (threshold_mode == "rel")


def test_epoch_sum_needs_keras_to_know_the_steps():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        attach(TorchReduceLROnPlateau(epoch_sum=True), steps=None)


@pytest.mark.parametrize("stop_after", [0, 1, 19, 20, 22, 43, 44, 49])
def test_resume_from_json_state_cuts_on_the_same_epochs(stop_after):
    unbroken = keras_rates(attach(TorchReduceLROnPlateau(**NOTES_RULE)), NOTES_TOTAL_LOSSES)

    first = attach(TorchReduceLROnPlateau(**NOTES_RULE))
    rates = keras_rates(first, NOTES_TOTAL_LOSSES[:stop_after])
    state = json.loads(json.dumps(first.state()))
    resumed = attach(
        TorchReduceLROnPlateau(state=state, **NOTES_RULE), lr=rates[-1] if rates else 0.1
    )
    rates += keras_rates(resumed, NOTES_TOTAL_LOSSES[stop_after:], first_epoch=stop_after)
    assert rates == unbroken
    assert resumed.state() == unbroken_callback_state()


def unbroken_callback_state():
    callback = attach(TorchReduceLROnPlateau(**NOTES_RULE))
    keras_rates(callback, NOTES_TOTAL_LOSSES)
    return callback.state()


def test_state_round_trips_an_infinite_best_through_json():
    fresh = TorchReduceLROnPlateau(mode="max")
    state = json.loads(json.dumps(fresh.state()))
    assert state == {"best": -np.inf, "num_bad_epochs": 0, "cooldown_counter": 0, "last_epoch": 0}
    assert TorchReduceLROnPlateau(mode="max", state=state).state() == fresh.state()


def test_fit_keeps_the_counters_between_calls_and_steps_once_an_epoch():
    x = np.ones((8, 1), "float32")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, trainable=False)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    callback = TorchReduceLROnPlateau(patience=1, epoch_sum=True)
    model.fit(x, x, batch_size=4, epochs=2, callbacks=[callback], verbose=0)
    assert callback.state()["num_bad_epochs"] == 1  # a frozen model: epoch 2 did not improve
    history = model.fit(x, x, batch_size=4, epochs=3, callbacks=[callback], verbose=0)
    assert callback.last_epoch == 5
    assert callback.last_value == pytest.approx(history.history["loss"][-1] * 2)
    # Cut after the second stalled epoch in a row (epoch 3), then again at epoch 5.
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)


def test_verbose_prints_torch_line_numbered_by_scheduler_steps(capsys):
    callback = attach(TorchReduceLROnPlateau(verbose=True, **NOTES_RULE))
    keras_rates(callback, NOTES_TOTAL_LOSSES[:21])
    lines = capsys.readouterr().out.splitlines()
    # The notes' log shows this line with its spaces collapsed, and numbered 21 because their
    # scheduler had been stepped once before the first epoch.
    assert lines == [TORCH_VERBOSE_LINE.format(20, 0, 0.01)]
    assert lines == ["Epoch    20: reducing learning rate of group 0 to 1.0000e-02."]


def test_quiet_by_default_and_silent_when_the_rate_is_at_its_floor(capsys):
    quiet = attach(TorchReduceLROnPlateau(patience=0))
    keras_rates(quiet, [1.0, 1.0])
    floored = attach(TorchReduceLROnPlateau(patience=0, min_lr=0.1, verbose=True))
    assert keras_rates(floored, [1.0, 1.0, 1.0]) == pytest.approx([0.1] * 3)
    assert capsys.readouterr().out == ""


def test_missing_monitor_warns_like_keras_and_skips_the_epoch():
    callback = attach(TorchReduceLROnPlateau(monitor="val_loss", patience=0))
    with pytest.warns(UserWarning, match="`val_loss` which is not available.*loss"):
        callback.on_epoch_end(0, {"loss": 1.0})
    assert callback.state()["last_epoch"] == 0


def test_a_learning_rate_schedule_is_refused():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    callback = TorchReduceLROnPlateau()
    callback.set_model(types.SimpleNamespace(optimizer=keras.optimizers.SGD(schedule)))
    callback.set_params({"steps": 1})
    with pytest.raises(ValueError, match="schedule"):
        callback.on_train_begin()


@pytest.mark.parametrize(
    "kwargs, shown",
    [
        ({"mode": "auto"}, "'auto'"),
        ({"threshold_mode": "relative"}, "'relative'"),
        ({"factor": 1.0}, "1.0"),
        ({"factor": -0.5}, "-0.5"),
        ({"patience": -1}, "-1"),
        ({"patience": 2.5}, "2.5"),
        ({"cooldown": True}, "True"),
        ({"threshold": float("nan")}, "nan"),
        ({"min_lr": -1e-3}, "-0.001"),
        ({"eps": "1e-8"}, "'1e-8'"),
        ({"monitor": ""}, "''"),
    ],
)
def test_bad_arguments_raise_naming_the_value(kwargs, shown):
    with pytest.raises(ValueError, match=f"{next(iter(kwargs))}.*got {shown}"):
        TorchReduceLROnPlateau(**kwargs)


def test_mode_errors_list_the_valid_choices():
    with pytest.raises(ValueError, match="'min', 'max'"):
        TorchReduceLROnPlateau(mode="auto")
    with pytest.raises(ValueError, match="'rel', 'abs'"):
        TorchReduceLROnPlateau(threshold_mode="relative")
