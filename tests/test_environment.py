"""What ``import keras_resnet`` sets in the process (keras_resnet.environment), and the opt-out."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run_python(code, *, env_updates=None, remove=()):
    env = {k: v for k, v in os.environ.items() if k not in remove}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(env_updates or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


# --- The JAX backend ---------------------------------------------------------------------------


def test_importing_the_package_selects_the_jax_backend_by_default():
    result = _run_python(
        "import keras_resnet, keras; print(keras.backend.backend())",
        remove=("KERAS_BACKEND",),
        env_updates={"JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "jax"


def test_another_backend_fails_the_import_naming_keras_backend():
    result = _run_python(
        "import keras_resnet, keras; print(keras.backend.backend())",
        env_updates={"KERAS_BACKEND": "tensorflow"},
    )
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "Keras is set to 'tensorflow'" in result.stderr
    assert "os.environ['KERAS_BACKEND'] = 'jax'" in result.stderr  # the line to add
    assert result.stdout.strip() == ""


def test_the_opt_out_leaves_the_environment_alone():
    code = """
    import os
    before = dict(os.environ)
    import keras_resnet
    print(sorted(k for k in os.environ if os.environ[k] != before.get(k)))
    """
    result = _run_python(
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
    result = _run_python(code, remove=("XLA_FLAGS",), env_updates={"JAX_PLATFORMS": "cpu"})
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
