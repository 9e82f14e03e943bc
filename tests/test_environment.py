"""What ``import keras_resnet`` sets in the process (keras_resnet.environment), and the opt-out."""

from pathlib import Path

import pytest
from helpers import run_python

ROOT = Path(__file__).resolve().parent.parent


# --- The backend ---------------------------------------------------------------------------------


def test_importing_the_package_selects_the_jax_backend_by_default():
    result = run_python(
        "import keras_resnet, keras; print(keras.backend.backend())",
        remove=("KERAS_BACKEND",),
        env_updates={"JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "jax"


# The library on the other backends: Keras imported first keeps its backend and the variable is
# left alone; then build, augment, train a step, save and load.
OTHER_BACKEND_CODE = """
import os
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

import keras_resnet

assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
assert os.environ["KERAS_BACKEND"] == sys.argv[1], os.environ["KERAS_BACKEND"]
images = np.random.default_rng(0).integers(1, 256, (4, 32, 32, 3)).astype("float32")
labels = np.arange(4, dtype="int32")


def build():
    return keras_resnet.build(
        "resnet8",
        input_normalization=((0.5,) * 3, (0.25,) * 3),
        augmentation=keras_resnet.RandomCropFlip(cutout=8, seed=3, name="augment"),
    )


model, twin = build(), build()
twin.set_weights(model.get_weights())
inference = keras.ops.convert_to_numpy(model(images, training=False))
assert inference.shape == (4, 10) and np.isfinite(inference).all()
np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images)), inference, atol=1e-5)

# Training draws follow from (seed, step): the same step draws the same crops, the next another.
layer = keras_resnet.RandomCropFlip(seed=3)
first = keras.ops.convert_to_numpy(layer(images, training=True))
second = keras.ops.convert_to_numpy(layer(images, training=True))
assert int(keras.ops.convert_to_numpy(layer.step.value)) == 2 and not np.array_equal(first, second)
again = keras.ops.convert_to_numpy(keras_resnet.RandomCropFlip(seed=3)(images, training=True))
np.testing.assert_array_equal(again, first)
for source, out in zip(images, first):  # each output is a window of the padded image
    padded = np.pad(source, ((4, 4), (4, 4), (0, 0)))
    windows = [padded[t : t + 32, c : c + 32] for t in range(9) for c in range(9)]
    assert any(np.array_equal(w, out) or np.array_equal(w[:, ::-1], out) for w in windows)
np.testing.assert_allclose(
    keras.ops.convert_to_numpy(model(images, training=True)),
    keras.ops.convert_to_numpy(twin(images, training=True)),
    atol=1e-5,
)

model.compile(
    optimizer=keras_resnet.TorchSGD(0.01, momentum=0.9, l2=5e-4),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
loss = model.fit(images, labels, batch_size=2, epochs=1, verbose=0).history["loss"][0]
assert np.isfinite(loss), loss
step = int(keras.ops.convert_to_numpy(model.get_layer("augment").step.value))
assert step == 3, step  # one direct call and two batches in fit

path = Path(tempfile.mkdtemp()) / "resnet8.keras"
model.save(path)
loaded = keras_resnet.load_model(path)
assert int(keras.ops.convert_to_numpy(loaded.get_layer("augment").step.value)) == 3
np.testing.assert_allclose(
    keras.ops.convert_to_numpy(loaded.predict(images, verbose=0)),
    keras.ops.convert_to_numpy(model.predict(images, verbose=0)),
    atol=1e-5,
)
print("ok")
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_the_library_builds_augments_trains_and_saves_on_another_backend(backend):
    result = run_python(
        f"import sys; sys.argv[1:] = [{backend!r}]\n{OTHER_BACKEND_CODE}",
        env_updates={"KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "ok"


def test_the_trainer_refuses_another_backend_with_the_line_to_add(tmp_path):
    """Before Keras (and TensorFlow behind it) is imported: the refusal is immediate."""
    code = f"""
    import runpy, sys
    sys.argv = [{str(ROOT / "train.py")!r}, "--synthetic", "--output-dir", {str(tmp_path)!r}]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        print("keras imported:", "keras" in sys.modules)
    """
    result = run_python(code, env_updates={"KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 2
    assert result.stdout.strip().splitlines()[-1] == "keras imported: False"
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: KERAS_BACKEND is 'tensorflow', but the trainer runs on JAX")
    assert "os.environ['KERAS_BACKEND'] = 'jax'" in last  # the line to add
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_opt_out_leaves_the_environment_alone():
    code = """
    import os
    before = dict(os.environ)
    import keras_resnet
    print(sorted(k for k in os.environ if os.environ[k] != before.get(k)))
    """
    result = run_python(
        code,
        remove=("XLA_FLAGS", "TF_ENABLE_ONEDNN_OPTS"),
        env_updates={"KERAS_RESNET_KEEP_ENVIRONMENT": "1", "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


# --- XLA's CPU convolutions --------------------------------------------------------------------

EIGEN = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def test_importing_the_package_picks_eigen_convolutions_and_they_are_exact():
    """The flag is set at import, takes effect (Eigen, not YNNPACK, in the compiled HLO) and
    the convolution still equals a float64 reference."""
    code = """
import numpy as np, keras_resnet, os, jax
from jax import lax
print(os.environ["XLA_FLAGS"])
x = np.random.default_rng(0).standard_normal((4, 8, 8, 16)).astype("float32")
w = np.random.default_rng(1).standard_normal((3, 3, 16, 8)).astype("float32")
conv = jax.jit(lambda x, w: lax.conv_general_dilated(
    x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")))
hlo = conv.lower(x, w).compile().as_text()
print("ynn" in hlo)
padded = np.pad(x.astype("float64"), ((0, 0), (1, 1), (1, 1), (0, 0)))
reference = sum(np.einsum("nhwc,co->nhwo", padded[:, i:i + 8, j:j + 8], w[i, j])
                for i in range(3) for j in range(3))
print(float(np.abs(np.asarray(conv(x, w)) - reference).max()))
"""
    result = run_python(
        code,
        remove=("XLA_FLAGS", "JAX_DISABLE_MOST_OPTIMIZATIONS"),
        env_updates={"JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    flags, uses_ynnpack, error = result.stdout.strip().splitlines()[-3:]
    assert flags == EIGEN
    assert uses_ynnpack == "False"
    assert float(error) < 1e-4


@pytest.mark.parametrize(
    ("flags", "jaxlib", "machine", "expected"),
    [
        ("", "0.10.2", "x86_64", EIGEN),
        ("--xla_force_host_platform_device_count=4", "0.10.0", "x86_64",
         f"--xla_force_host_platform_device_count=4 {EIGEN}"),
        # The user's own choice of the option wins.
        ("--xla_cpu_experimental_ynn_fusion_type=+individual_convolution", "0.10.2", "x86_64",
         "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"),
        # Other jaxlib releases may not know the flag, and XLA aborts on unknown flags.
        ("", "0.11.0", "x86_64", ""),
        # Measured on x86-64 only.
        ("", "0.10.2", "aarch64", ""),
    ],
)  # fmt: skip
def test_eigen_convolutions_flag_respects_the_user_the_jaxlib_release_and_the_machine(
    monkeypatch, flags, jaxlib, machine, expected
):
    from keras_resnet import environment

    monkeypatch.setenv("XLA_FLAGS", flags)
    monkeypatch.setattr(environment.importlib.metadata, "version", lambda name: jaxlib)
    monkeypatch.setattr(environment.platform, "machine", lambda: machine)
    environment.prefer_eigen_convolutions()
    assert environment.os.environ["XLA_FLAGS"] == expected
