"""TorchSGD follows torch.optim.SGD's update: coupled L2 decay, lr outside the momentum buffer."""

import keras
import numpy as np
import pytest

from keras_resnet.optimizers import TorchSGD

MOMENTUM = 0.9
SHAPES = [(3, 2), (2,)]
STEPS = 6
LR_CHANGE_AT = 3  # steps 0-2 at LR, steps 3-5 at NEW_LR
LR, NEW_LR = 0.1, 0.01


def initial_weights():
    rng = np.random.default_rng(0)
    return [rng.normal(size=shape).astype(np.float32) for shape in SHAPES]


def gradients():
    rng = np.random.default_rng(1)
    return [[rng.normal(size=shape).astype(np.float32) for shape in SHAPES] for _ in range(STEPS)]


def lr_at(step: int) -> float:
    return LR if step < LR_CHANGE_AT else NEW_LR


def torch_rule(weights, grads_per_step, l2, nesterov, lr=lr_at, momentum=MOMENTUM):
    """torch.optim.SGD's update, written out in float64 numpy."""
    weights = [w.astype(np.float64) for w in weights]
    buffers = [np.zeros_like(w) for w in weights]
    for step, grads in enumerate(grads_per_step):
        for w, b, grad in zip(weights, buffers, grads, strict=True):
            g = grad + l2 * w
            b *= momentum
            b += g
            w -= lr(step) * (g + momentum * b if nesterov else b)
    return weights


def run_keras(optimizer, weights, grads_per_step):
    variables = [keras.Variable(w) for w in weights]
    for step, grads in enumerate(grads_per_step):
        if step == LR_CHANGE_AT:
            optimizer.learning_rate = NEW_LR
        optimizer.apply_gradients(
            zip([keras.ops.convert_to_tensor(g) for g in grads], variables, strict=True)
        )
    return [keras.ops.convert_to_numpy(v) for v in variables]


def assert_weights_close(actual, expected, atol=1e-6):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=atol)


@pytest.mark.parametrize("nesterov", [False, True], ids=["plain", "nesterov"])
def test_matches_torch_update_rule(nesterov):
    weights, grads = initial_weights(), gradients()
    for l2 in (5e-4, 0.0):
        optimizer = TorchSGD(LR, momentum=MOMENTUM, nesterov=nesterov, l2=l2)
        actual = run_keras(optimizer, weights, grads)
        assert_weights_close(actual, torch_rule(weights, grads, l2, nesterov))
        assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(NEW_LR)
        # The check can tell the variants apart: the other nesterov setting ends elsewhere.
        other = torch_rule(weights, grads, l2, not nesterov)
        assert max(np.abs(a - o).max() for a, o in zip(actual, other, strict=True)) > 1e-3


def test_weight_decay_is_coupled_and_visible():
    # A larger l2 than the notes' so that its effect is far above float32 noise.
    weights, grads = initial_weights(), gradients()
    actual = run_keras(TorchSGD(LR, l2=0.05), weights, grads)
    assert_weights_close(actual, torch_rule(weights, grads, 0.05, False))
    without = torch_rule(weights, grads, 0.0, False)
    assert max(np.abs(a - o).max() for a, o in zip(actual, without, strict=True)) > 1e-2

    # Without momentum it is plain SGD on the decayed gradient.
    actual = run_keras(TorchSGD(LR, momentum=0.0, l2=0.01), weights, grads)
    expected = torch_rule(weights, grads, 0.01, False, momentum=0.0)
    assert_weights_close(actual, expected)


def test_lr_change_differs_from_keras_sgd():
    """Keras's SGD keeps lr inside its velocity; TorchSGD (like PyTorch) does not. With a
    constant lr and no decay the two agree; after an lr cut they part ways."""
    weights, grads = initial_weights(), gradients()
    before = grads[:LR_CHANGE_AT]
    stock_before = run_keras(keras.optimizers.SGD(LR, momentum=MOMENTUM), weights, before)
    torch_before = run_keras(TorchSGD(LR, momentum=MOMENTUM), weights, before)
    assert_weights_close(stock_before, torch_before)
    assert_weights_close(torch_before, torch_rule(weights, before, 0.0, False, lr=lambda step: LR))

    stock = run_keras(keras.optimizers.SGD(LR, momentum=MOMENTUM), weights, grads)
    ours = run_keras(TorchSGD(LR, momentum=MOMENTUM), weights, grads)
    assert_weights_close(ours, torch_rule(weights, grads, 0.0, False))
    assert max(np.abs(s - o).max() for s, o in zip(stock, ours, strict=True)) > 1e-2


def test_matches_torch_optim_sgd():
    torch = pytest.importorskip("torch")
    weights, grads = initial_weights(), gradients()
    for l2 in (5e-4, 0.0):
        for nesterov in (False, True):
            params = [torch.nn.Parameter(torch.tensor(w)) for w in weights]
            reference = torch.optim.SGD(
                params, lr=LR, momentum=MOMENTUM, weight_decay=l2, nesterov=nesterov
            )
            for step, step_grads in enumerate(grads):
                for group in reference.param_groups:
                    group["lr"] = lr_at(step)
                for p, g in zip(params, step_grads, strict=True):
                    p.grad = torch.tensor(g)
                reference.step()
            expected = [p.detach().numpy() for p in params]

            optimizer = TorchSGD(LR, momentum=MOMENTUM, nesterov=nesterov, l2=l2)
            actual = run_keras(optimizer, weights, grads)
            diff = max(np.abs(a - e).max() for a, e in zip(actual, expected, strict=True))
            assert diff < 1e-6, (l2, nesterov, diff)


# --- inside model.fit ----------------------------------------------------------------------


def linear_data():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = rng.normal(size=(8, 2)).astype(np.float32)
    kernel = rng.normal(size=(3, 2)).astype(np.float32)
    bias = rng.normal(size=(2,)).astype(np.float32)
    return x, y, kernel, bias


def mse_and_grads(x, y, kernel, bias):
    """Mean squared error of a linear model (mean over all elements) and its gradients."""
    residual = x @ kernel + bias - y
    loss = np.mean(residual**2)
    d_pred = 2 * residual / residual.size
    return loss, [x.T @ d_pred, d_pred.sum(0)]


def linear_model(kernel, bias, optimizer):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.set_weights([kernel, bias])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def test_fit_applies_l2_in_optimizer_not_in_loss():
    l2, steps = 0.05, 3
    x, y, kernel, bias = linear_data()
    model = linear_model(kernel, bias, TorchSGD(LR, momentum=MOMENTUM, l2=l2))
    history = model.fit(x, y, batch_size=len(x), epochs=steps, shuffle=False, verbose=0)

    weights = [kernel.astype(np.float64), bias.astype(np.float64)]
    buffers = [np.zeros_like(w) for w in weights]
    expected_losses = []
    for _ in range(steps):
        loss, grads = mse_and_grads(x, y, *weights)  # the unregularised loss
        expected_losses.append(loss)
        for w, b, grad in zip(weights, buffers, grads, strict=True):
            g = grad + l2 * w
            b *= MOMENTUM
            b += g
            w -= LR * b
    assert_weights_close(model.get_weights(), weights, atol=1e-5)
    # The reported loss is the plain MSE at each step's starting weights, no L2 term.
    np.testing.assert_allclose(history.history["loss"], expected_losses, rtol=1e-5)
    penalty = 0.5 * l2 * np.sum(kernel.astype(np.float64) ** 2)
    assert penalty > 1e-3 * expected_losses[0]  # large enough that including it would show

    # And the decay did something: without it the weights end elsewhere.
    plain = linear_model(kernel, bias, TorchSGD(LR, momentum=MOMENTUM))
    plain.fit(x, y, batch_size=len(x), epochs=steps, shuffle=False, verbose=0)
    gap = max(
        np.abs(a - b).max() for a, b in zip(model.get_weights(), plain.get_weights(), strict=True)
    )
    assert gap > 1e-3


# --- configuration and saving --------------------------------------------------------------


def test_config_round_trip():
    optimizer = TorchSGD(0.05, momentum=0.8, nesterov=True, l2=5e-4)
    config = optimizer.get_config()
    assert config["l2"] == 5e-4
    restored = TorchSGD.from_config(config)
    assert isinstance(restored, TorchSGD)
    assert restored.l2 == 5e-4
    assert restored.momentum == pytest.approx(0.8)
    assert restored.nesterov is True
    assert float(keras.ops.convert_to_numpy(restored.learning_rate)) == pytest.approx(0.05)
    generic = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(generic, TorchSGD) and generic.l2 == 5e-4

    defaults = TorchSGD()
    assert defaults.l2 == 0.0
    assert defaults.momentum == pytest.approx(0.9)
    assert defaults.nesterov is False


def test_negative_l2_is_rejected():
    for l2 in (-0.1, -1):
        with pytest.raises(ValueError, match="l2") as info:
            TorchSGD(0.1, l2=l2)
        assert repr(l2) in str(info.value)


def fitted_model(x, y, kernel, bias):
    model = linear_model(kernel, bias, TorchSGD(LR, momentum=MOMENTUM, nesterov=True, l2=0.01))
    model.fit(x, y, batch_size=len(x), epochs=2, shuffle=False, verbose=0)
    return model


def test_saved_model_keeps_optimizer_and_its_state(tmp_path):
    x, y, kernel, bias = linear_data()
    model = fitted_model(x, y, kernel, bias)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.optimizer) is TorchSGD
    assert loaded.optimizer.l2 == 0.01
    assert loaded.optimizer.nesterov is True
    assert loaded.optimizer.momentum == pytest.approx(MOMENTUM)
    # The momentum buffers come back, so training continues exactly as it would have.
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    assert_weights_close(loaded.get_weights(), model.get_weights(), atol=1e-7)
