"""Random and hostile arguments: the API refuses them with ValueError, the CLI with one line.

``build``, the blocks and the command line are fuzzed with hypothesis. Every call must either
work or fail the documented way: ``ValueError`` from the API; from the command line exit code 1
or 2 and an ``error:`` line, never a traceback. Models are built as skeletons (weights created
at their shapes but never initialised), which costs milliseconds instead of a JAX compile per
shape; the checks under test all run before any weight is initialised.
"""

import math
import re

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_resnet import build, cli, get_spec, list_models
from keras_resnet.blocks import BLOCKS, SHORTCUTS, BasicBlock
from keras_resnet.models import POOLINGS, STEMS
from keras_resnet.trainer import config as trainer_config
from keras_resnet.trainer import data, fit

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,  # runs stay independent: nothing is replayed from a previous session
)

# Values of every type a caller might pass by mistake: wrong types, wrong ranges, containers.
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70),
    st.integers(min_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.complex_numbers(max_magnitude=10),
    st.lists(st.integers(-2, 8), max_size=4),
    st.lists(st.floats(-2, 8), min_size=1, max_size=3).map(tuple),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.frozensets(st.integers(0, 3), max_size=2),
    st.lists(st.integers(0, 8), max_size=4).map(np.array),
    st.integers(1, 8).map(np.int64),
    st.just(object()),
)

# Registered names whose skeleton builds in well under a second (not resnet1202, *1001).
NAMES = [n for n in list_models() if not n.endswith(("1202", "1001"))]


def _skeleton(name, **kwargs) -> keras.Model:
    with keras.StatelessScope(initialize_variables=False):
        return build(name, **kwargs)


# --- build ------------------------------------------------------------------------------------


@st.composite
def _valid_arguments(draw) -> dict:
    """Small, valid ``build`` arguments: any stage count, block, stem and shortcut."""
    stages, channels = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    side = st.none() | st.integers(32, 300)  # 32: the most any four-stage net downsamples
    kwargs = {
        "depths": tuple(draw(st.lists(st.integers(1, 2), min_size=stages, max_size=stages))),
        # Non-decreasing, as shortcut A (zero-padding) can only add channels.
        "widths": tuple(
            sorted(draw(st.lists(st.integers(1, 8), min_size=stages, max_size=stages)))
        ),
        "input_shape": (draw(side), draw(side), channels),
    }
    optional = {
        "num_classes": st.integers(1, 12),
        "include_top": st.booleans(),
        "pooling": st.sampled_from(POOLINGS),
        "classifier_activation": st.sampled_from([None, "softmax", "sigmoid", "linear"]),
        "input_normalization": st.just(((0.5,) * channels, (0.25,) * channels)),
        "block": st.sampled_from(sorted(BLOCKS)),
        "shortcut": st.sampled_from(SHORTCUTS),
        "stem": st.sampled_from(STEMS),
        "zero_init_residual": st.booleans(),
    }
    kwargs.update(draw(st.fixed_dictionaries({}, optional=optional)))
    return kwargs


ARGUMENTS = (
    "num_classes",
    "input_shape",
    "include_top",
    "pooling",
    "classifier_activation",
    "input_normalization",
    "block",
    "depths",
    "widths",
    "shortcut",
    "stem",
    "zero_init_residual",
)


@st.composite
def build_calls(draw) -> tuple:
    """(name, kwargs, wrong): valid arguments with up to two (``wrong``) replaced by junk or
    joined by a stray keyword."""
    name, kwargs = draw(st.sampled_from(NAMES)), draw(_valid_arguments())
    wrong = draw(st.sets(st.sampled_from([*ARGUMENTS, "name", "stray"]), max_size=2))
    for part in wrong:
        if part == "name":
            name = draw(JUNK)
        elif part == "stray":
            stray = st.from_regex(r"[a-z_]{1,10}", fullmatch=True)
            kwargs[draw(stray.filter(lambda k: k not in ARGUMENTS and k != "name"))] = draw(JUNK)
        else:
            kwargs[part] = draw(JUNK)
    return name, kwargs, wrong


def test_build_returns_a_model_or_raises_value_error_for_any_arguments():
    outcomes = {"built": 0, "refused": 0}

    @FUZZ
    @given(build_calls())
    def check(call):
        name, kwargs, wrong = call
        try:
            model = _skeleton(name, **kwargs)
        except ValueError as error:
            assert str(error), "a refusal must say why"
            assert wrong, f"refused valid arguments: {error}"
            outcomes["refused"] += 1
            return
        assert isinstance(model, keras.Model)
        if kwargs.get("include_top", True):
            assert model.output_shape == (None, kwargs.get("num_classes", 10))
        outcomes["built"] += 1

    check()
    assert outcomes["built"] and outcomes["refused"], outcomes


@FUZZ
@given(
    st.integers(1, 3).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(1, 2), min_size=n, max_size=n),
            st.lists(st.integers(1, 8), min_size=n, max_size=n).map(sorted),
        )
    ),
    st.sampled_from(sorted(BLOCKS)),
    st.sampled_from(SHORTCUTS),
    st.sampled_from(STEMS),
    st.integers(1, 4),
)
def test_every_valid_small_configuration_builds(stages, block, shortcut, stem, channels):
    depths, widths = stages
    side = 2 ** (len(depths) - 1) * (4 if stem == "imagenet" else 1)
    model = _skeleton(
        "resnet18",
        input_shape=(side, None, channels),
        depths=depths,
        widths=widths,
        block=block,
        shortcut=shortcut,
        stem=stem,
        num_classes=3,
    )
    assert model.output_shape == (None, 3)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"block": ["basic"]}, "['basic']"),
        ({"block": {}}, "{}"),
        ({"stem": ["cifar"]}, "['cifar']"),
        ({"pooling": np.array([1, 2])}, "array"),
        ({"depths": None}, "depths=None"),
        ({"depths": "2222"}, "depths='2222'"),
        ({"depths": (), "widths": ()}, "depths=()"),
        ({"depths": (True, 2, 2, 2)}, "depths=(True, 2, 2, 2)"),
        ({"widths": (64.0, 128, 256, 512)}, "64.0"),
        ({"num_classes": True}, "got True"),
        ({"num_classes": "10"}, "got '10'"),
        ({"input_shape": (32, 32, 3.0)}, "(32, 32, 3.0)"),
        ({"input_shape": (32, 32, "3")}, "(32, 32, '3')"),
        ({"input_shape": (32, 32, False)}, "(32, 32, False)"),
        ({"include_top": "no"}, "got 'no'"),
        ({"zero_init_residual": "yes"}, "got 'yes'"),
        ({"classifier_activation": "softmaks"}, "'softmaks'; valid: None, celu"),
        ({"classifier_activation": len}, "<built-in function len>"),
        ({"input_normalization": 0.5}, "got 0.5"),
        ({"input_normalization": "ab"}, "got 'ab'"),
        ({"input_normalization": ((0.5,) * 3,)}, "(mean, std)"),
        ({"input_normalization": ((0.5,) * 2, (0.2,) * 2)}, "3 finite numbers each"),
        ({"input_normalization": ((0.5,) * 3, (0.2, 0.0, 0.2))}, "std > 0"),
        ({"input_normalization": ((math.nan,) * 3, (0.2,) * 3)}, "nan"),
        ({"input_normalization": (("0.5",) * 3, (0.2,) * 3)}, "'0.5'"),
    ],
)
def test_each_kind_of_bad_argument_is_a_value_error_naming_it(kwargs, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        _skeleton("resnet18", **kwargs)


def test_an_unhashable_model_name_is_a_value_error_listing_the_names():
    with pytest.raises(ValueError, match=r"Unknown model \['resnet18'\].*resnet20"):
        build(["resnet18"])


def test_depths_and_widths_may_be_lists_and_come_back_as_tuples():
    spec = get_spec("resnet18", depths=[1, 1], widths=[4, 8])
    assert (spec.depths, spec.widths) == ((1, 1), (4, 8))
    hash(spec)


# --- Blocks ------------------------------------------------------------------------------------

FLOATS = ("float32", "float16", "bfloat16", "float64")
NON_FLOATS = ("int32", "int64", "uint8", "bool")
ALWAYS_WRONG = {"rank", "channels", "dtype"}


@st.composite
def block_calls(draw) -> tuple:
    """A valid block call with up to two parts made wrong: an argument replaced by junk, a
    3-D or 5-D input, an unknown or zero channel count, an integer or bool dtype."""
    cls = draw(st.sampled_from(list(BLOCKS.values())))
    args = {
        "filters": draw(st.integers(1, 8)),
        "strides": draw(st.sampled_from([1, 2])),
        "shortcut": draw(st.sampled_from(SHORTCUTS)),
    }
    sides = [draw(st.none() | st.integers(1, 9)) for _ in range(2)]
    channels, dtype = draw(st.integers(1, 8)), draw(st.sampled_from(FLOATS))
    wrong = draw(st.sets(st.sampled_from([*args, *sorted(ALWAYS_WRONG)]), max_size=2))
    for part in wrong:
        if part in args:
            args[part] = draw(JUNK)
        elif part == "rank":
            sides = draw(st.lists(st.integers(1, 9), max_size=3).filter(lambda s: len(s) != 2))
        elif part == "channels":
            channels = draw(st.sampled_from([None, 0]))
        else:
            dtype = draw(st.sampled_from(NON_FLOATS))
    return cls, args, (*sides, channels), dtype, wrong


@FUZZ
@given(block_calls())
def test_a_block_returns_a_tensor_or_raises_value_error(call):
    cls, args, shape, dtype, wrong = call
    inputs = keras.Input(shape, dtype=dtype)
    try:
        with keras.StatelessScope(initialize_variables=False):
            outputs = cls(**args)(inputs)
    except ValueError as error:
        assert str(error)
        return
    assert not wrong & ALWAYS_WRONG, f"accepted a wrong {wrong} input: {shape}, {dtype}"
    assert outputs.shape[-1] == args["filters"] * cls.expansion


@pytest.mark.parametrize("dtype", ["int32", "uint8", "bool"])
def test_a_block_refuses_a_non_float_input_naming_the_dtype(dtype):
    with pytest.raises(ValueError, match=rf"expects a floating-point input, got dtype '{dtype}'"):
        BasicBlock(4)(keras.Input((8, 8, 4), dtype=dtype))
    with pytest.raises(ValueError, match=rf"got dtype '{dtype}'"):
        BasicBlock(4)(np.ones((1, 8, 8, 4), dtype=dtype))


def test_a_block_refuses_zero_channels_and_bool_strides():
    with pytest.raises(ValueError, match=re.escape("(None, 8, 8, 0)")):
        BasicBlock(4)(keras.Input((8, 8, 0)))
    with pytest.raises(ValueError, match="strides must be 1 or 2, got True"):
        BasicBlock(4, strides=True)


# --- The command line --------------------------------------------------------------------------


class _Validated(Exception):
    """Raised where training would build its model: the arguments passed every check."""


def _numbers(low, high) -> st.SearchStrategy[str]:
    """Text for a numeric flag: in range, out of range, non-finite, or not a number at all."""
    return st.one_of(
        st.integers(low, high).map(str),
        st.integers().map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["nan", "inf", "-inf", "1e309", "-0", "0", "1e-320", "0x10", "1_0", " 5"]),
        st.text(max_size=6),
    )


# flag -> (valid values, junk values); valid ones keep every check passing on synthetic data.
TRAIN_FLAGS = {
    "--epochs": (st.integers(1, 100).map(str), _numbers(-5, 5)),
    "--batch-size": (st.integers(1, 512).map(str), _numbers(-5, 5)),
    "--lr": (st.floats(1e-4, 1.0).map(repr), _numbers(-1, 1)),
    "--momentum": (st.floats(0, 0.99).map(repr), _numbers(-1, 2)),
    "--weight-decay": (st.floats(0, 1e-2).map(repr), _numbers(-1, 1)),
    "--lr-patience": (st.integers(1, 10).map(str), _numbers(-2, 2)),
    "--lr-factor": (st.floats(0.01, 0.9).map(repr), _numbers(-1, 2)),
    "--min-lr": (st.floats(0, 1e-3).map(repr), _numbers(-1, 1)),
    "--seed": (st.integers(0, 2**32 - 1).map(str), _numbers(-5, 5)),
    "--train-size": (st.integers(1, 1000).map(str), _numbers(-5, 5000)),
    "--val-size": (st.integers(0, 1000).map(str), _numbers(-5, 5000)),
    "--precision": (st.sampled_from(trainer_config.PRECISIONS), st.text(max_size=8)),
    "--log-format": (st.sampled_from(trainer_config.LOG_FORMATS), st.text(max_size=8)),
    "--model": (st.sampled_from(["resnet20", "plain20", "preact_resnet18"]), st.text(max_size=8)),
}
EXTRA_FLAGS = ["--recipe", "--data-dir", "--output-dir", "--resume", "--synthetic", "--overwrite"]


def _paths(root: str) -> st.SearchStrategy[str]:
    """Paths inside ``root`` only: missing, empty, odd characters, a junk file, a folder."""
    names = st.text(max_size=10).filter(lambda t: ".." not in t)
    return st.one_of(
        names.map(lambda t: f"{root}/{t}"),
        st.sampled_from([f"{root}/junk.keras", root, f"{root}/none.keras", f"{root}/a\x00b"]),
    )


@st.composite
def train_argvs(draw, root: str) -> list[str]:
    """A valid ``train`` command with up to three flags given junk, stray tokens or extras."""
    argv = ["--synthetic", "--output-dir", f"{root}/run"]
    flags = draw(st.lists(st.sampled_from(sorted(TRAIN_FLAGS)), unique=True, max_size=6))
    junk = draw(st.sets(st.sampled_from(sorted(TRAIN_FLAGS)), max_size=3))
    for flag in flags + sorted(junk - set(flags)):
        valid, bad = TRAIN_FLAGS[flag]
        argv += [flag, draw(bad if flag in junk else valid)]
    for flag in draw(st.lists(st.sampled_from(EXTRA_FLAGS), max_size=2)):
        argv += [flag] if flag in ("--synthetic", "--overwrite") else [flag, draw(_paths(root))]
    if draw(st.booleans()):
        argv.remove("--synthetic")  # CIFAR-10 itself (stubbed below)
    argv += draw(st.lists(st.text(max_size=6), max_size=1))
    return argv


@st.composite
def main_argvs(draw, root: str) -> list[str]:
    """``python -m keras_resnet`` commands: train, evaluate, predict, list or junk."""
    command = draw(st.sampled_from(["train", "evaluate", "predict", "list", "junk"]))
    if command == "train":
        return ["train", *draw(train_argvs(root))]
    if command == "evaluate":
        options = st.sampled_from(["--synthetic", "--seed", "--batch-size", "--output-dir"])
        argv = ["evaluate", draw(_paths(root))]
        for option in draw(st.lists(options, max_size=3)):
            argv += [option] if option == "--synthetic" else [option, draw(_numbers(-5, 5))]
        return argv
    if command == "predict":
        images = draw(st.lists(_paths(root), max_size=3))
        top = draw(st.lists(_numbers(-2, 12), max_size=1))
        return ["predict", draw(_paths(root)), *images, *(["--top", *top] if top else [])]
    if command == "list":
        return ["list"]
    return draw(st.lists(st.text(max_size=8), max_size=3))


@pytest.fixture
def stubbed_training(monkeypatch, tmp_path):
    """Training stops with ``_Validated`` where it would build the model; CIFAR-10 is stubbed.

    The stub data generator keeps the real one's seed check, so bad seeds still fail as they
    would in a run.
    """
    synthetic = data.synthetic_cifar10()

    def generate(train_size=2048, test_size=512, seed=0):
        np.random.default_rng(seed)
        return synthetic

    def stop(*args, **kwargs):
        raise _Validated

    monkeypatch.setattr(data, "synthetic_cifar10", generate)
    monkeypatch.setattr(data, "load_dataset", lambda *args, **kwargs: synthetic)
    monkeypatch.setattr(fit, "build_model", stop)
    monkeypatch.chdir(tmp_path)  # the default runs/<model> folder lands here
    (tmp_path / "junk.keras").write_bytes(b"PK\x03\x04 junk")
    return str(tmp_path)


def _run_cli(capsys, entry, argv, outcomes) -> None:
    """Run one command line and check that it ended one of the documented ways."""
    capsys.readouterr()
    try:
        code = entry(argv)
    except _Validated:
        outcomes["validated"] += 1
        return
    except SystemExit as exit_:
        code = exit_.code
    assert keras.mixed_precision.dtype_policy().name == "float32", argv  # train() restores it
    out, err = capsys.readouterr()
    assert "Traceback" not in err, (argv, err)
    if code == 0:  # `list`, or --help reached through an abbreviation
        assert out, argv
        return
    assert code in (1, 2), (argv, code, err)
    if err.startswith("usage: "):  # argparse's: usage, then "prog: error: ..."
        assert code == 2 and ": error: " in err, (argv, err)
    else:  # our own: exactly one line (split on newlines only: a value may hold a \r)
        assert err.startswith("error: ") and err.count("\n") == 1, (argv, err)
    outcomes["refused"] += 1


def test_train_py_refuses_any_bad_flag_with_exit_2_or_1_and_one_error_line(
    capsys, stubbed_training
):
    outcomes = {"validated": 0, "refused": 0}

    @FUZZ
    @given(train_argvs(stubbed_training))
    def check(argv):
        _run_cli(capsys, cli.train_main, argv, outcomes)

    check()
    assert outcomes["validated"] and outcomes["refused"], outcomes


def test_every_subcommand_refuses_bad_input_with_exit_2_or_1_and_one_error_line(
    capsys, stubbed_training
):
    outcomes = {"validated": 0, "refused": 0}

    @FUZZ
    @given(main_argvs(stubbed_training))
    def check(argv):
        _run_cli(capsys, cli.main, argv, outcomes)

    check()
    assert outcomes["refused"], outcomes
