"""The report figures are real PNGs, drawn from whatever columns a history has."""

import numpy as np
import pytest
from PIL import Image

from keras_resnet.trainer.data import CLASS_NAMES
from keras_resnet.trainer.reports import (
    MATRIX_INCHES,
    curves_figure,
    lr_cuts,
    plot_confusion_matrix,
    plot_curves,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _history(epochs: int, cuts=(21, 45), with_eval: bool = True) -> list[dict]:
    rows = []
    for epoch in range(1, epochs + 1):
        lr = 0.1 * 0.1 ** sum(epoch >= cut for cut in cuts)
        row = {
            "epoch": epoch,
            "loss": 2.3 / epoch**0.5,
            "accuracy": 1 - 0.9 / epoch**0.3,
            "learning_rate": lr,
        }
        if with_eval:
            row |= {"val_loss": 2.4 / epoch**0.4, "val_accuracy": 1 - 0.95 / epoch**0.25}
        rows.append(row)
    return rows


def _assert_png(path, min_side: int = 300) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert min(img.size) >= min_side
        assert max(img.size) <= 4000


def test_lr_cuts_finds_each_drop():
    assert lr_cuts(_history(60)) == [(21, pytest.approx(0.01)), (45, pytest.approx(0.001))]


def test_lr_cuts_ignores_warmup_rises_and_flat_rates():
    rates = [0.01, 0.1, 0.1, 0.02]
    history = [{"epoch": i + 1, "learning_rate": lr} for i, lr in enumerate(rates)]
    assert lr_cuts(history) == [(4, 0.02)]


def test_plot_curves_writes_png(tmp_path):
    path = tmp_path / "curves.png"
    plot_curves(_history(60), path, eval_name="validation")
    _assert_png(path)


def test_plot_curves_without_eval_columns(tmp_path):
    path = tmp_path / "curves.png"
    plot_curves(_history(30, with_eval=False), path)
    _assert_png(path)


def test_plot_curves_single_row(tmp_path):
    path = tmp_path / "curves.png"
    plot_curves(_history(1), path)
    _assert_png(path)


def test_one_diverging_test_loss_does_not_flatten_the_loss_curves(tmp_path):
    history = _history(30)  # with a learning-rate cut at epoch 21
    history[9]["val_loss"] = 55.0  # one epoch's test loss blows up
    fig = curves_figure(history)
    ax_loss, ax_acc = fig.axes
    assert ax_loss.get_yscale() == "log" and ax_acc.get_yscale() == "linear"
    assert ax_loss.get_title() == "loss (log scale)"
    # The training losses (2.3 down to 0.42) span over a quarter of the axis; on a linear
    # axis up to 55 they would span 3% of it.
    low, high = np.log10(ax_loss.get_ylim())
    assert (np.log10(2.3) - np.log10(2.3 / 30**0.5)) / (high - low) > 0.25
    plot_curves(history, tmp_path / "curves.png", synthetic=True)
    _assert_png(tmp_path / "curves.png")


def test_a_zero_loss_keeps_the_linear_scale():
    history = _history(3)
    history[2]["loss"] = 0.0
    assert curves_figure(history).axes[0].get_yscale() == "linear"


def test_titles_say_when_the_data_was_synthetic(tmp_path):
    assert (
        "generated data, not CIFAR-10"
        in curves_figure(_history(3), synthetic=True)._suptitle.get_text()
    )
    assert "generated" not in curves_figure(_history(3))._suptitle.get_text()


def test_plot_curves_rejects_empty_history(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plot_curves([], tmp_path / "curves.png")


def test_plot_confusion_matrix_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 40, size=(10, 10)) + np.diag(rng.integers(700, 980, size=10))
    path = tmp_path / "confusion.png"
    plot_confusion_matrix(matrix, CLASS_NAMES, path)
    _assert_png(path)
    assert not list(tmp_path.glob(".*"))  # the atomic write left no temporary file


def test_a_hundred_class_confusion_matrix_is_drawn_small_and_without_counts(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, size=(100, 100)) + np.diag(rng.integers(50, 100, size=100))
    path = tmp_path / "confusion.png"
    plot_confusion_matrix(matrix, [f"class {i}" for i in range(100)], path)
    _assert_png(path)
    with Image.open(path) as image:  # 16 inches at 150 dpi, the colour bar beside it
        assert max(image.size) <= (MATRIX_INCHES + 1.2) * 150 + 1


def test_plot_confusion_matrix_rejects_mismatched_classes(tmp_path):
    with pytest.raises(ValueError, match="3 classes"):
        plot_confusion_matrix(np.eye(4), CLASS_NAMES[:3], tmp_path / "confusion.png")
