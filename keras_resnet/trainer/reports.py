"""Figures of a training run: curves and a confusion matrix are quicker to read than a CSV.

matplotlib is imported inside the functions (``import keras_resnet.reports`` stays cheap) and
used through ``Figure`` directly, without pyplot's global state or an interactive backend.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from keras_resnet.trainer import io

if TYPE_CHECKING:
    from keras_resnet.trainer.run_folder import RunFolder

TRAIN_COLOR = "tab:blue"
EVAL_COLOR = "tab:orange"


def lr_cuts(history: list[dict]) -> list[tuple[int, float]]:
    """(epoch, new learning rate) for each epoch whose rate is below the previous epoch's."""
    cuts = []
    for previous, row in itertools.pairwise(history):
        if row["learning_rate"] < previous["learning_rate"]:
            cuts.append((int(row["epoch"]), float(row["learning_rate"])))
    return cuts


def _series(history: list[dict], key: str, scale: float = 1.0) -> tuple[list, list]:
    """Epochs and values of ``key`` over the rows that have it."""
    rows = [row for row in history if row.get(key) is not None]
    return [row["epoch"] for row in rows], [row[key] * scale for row in rows]


SYNTHETIC_NOTE = " (generated data, not CIFAR-10)"
# A confusion matrix writes each count in its cell up to this many classes, and grows with the
# classes up to this many inches a side (150 dpi): 100 classes, annotated at full size, took 35 s
# and 10,000 pixels a side to draw.
ANNOTATED_CLASSES = 30
MATRIX_INCHES = 16.0


def plot_run(
    run: RunFolder,
    history: list[dict],
    metrics: dict,
    class_names: Sequence[str],
    eval_name: str,
) -> None:
    """A finished run's figures, the curves and the confusion matrix, in its folder; a failed
    write names the file (``RunFolder.writing``)."""
    synthetic = metrics.get("data") == "synthetic"
    with run.writing(run.curves_path):
        plot_curves(history, run.curves_path, eval_name, synthetic)
    with run.writing(run.confusion_path):
        plot_confusion_matrix(
            np.asarray(metrics["confusion_matrix"]),
            class_names,
            run.confusion_path,
            synthetic=synthetic,
        )


def plot_curves(
    history: list[dict], path: str | os.PathLike, eval_name: str = "test", synthetic: bool = False
) -> None:
    """Write ``curves_figure`` as a PNG."""
    fig = curves_figure(history, eval_name, synthetic)
    io.save_atomically(path, lambda p: fig.savefig(p, format="png", dpi=150))


def curves_figure(history: list[dict], eval_name: str = "test", synthetic: bool = False):
    """Loss and accuracy per epoch, train vs ``eval_name``, with learning-rate cuts marked.

    A cut is drawn between the last epoch at the old rate and the first at the new one. Losses
    are drawn on a log scale: one diverging epoch (a test loss of 55) would otherwise flatten
    the rest of the curve. ``synthetic`` says so in the title.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not history:
        raise ValueError("history is empty: nothing to plot")
    marker = "o" if len(history) == 1 else None  # a lone epoch would draw no line
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    # Late in training loss is low and accuracy high: cut labels and legends go where curves aren't.
    panels = (
        (ax_loss, "loss", 1.0, "loss", "top", "upper right"),
        (ax_acc, "accuracy", 100.0, "accuracy (%)", "bottom", "lower right"),
    )
    for ax, key, scale, ylabel, label_side, legend_loc in panels:
        train_epochs, train_values = _series(history, key, scale)
        ax.plot(train_epochs, train_values, color=TRAIN_COLOR, marker=marker, label="train")
        eval_epochs, eval_values = _series(history, f"val_{key}", scale)
        if key == "loss" and all(0 < value < math.inf for value in train_values + eval_values):
            ax.set_yscale("log")
        if eval_epochs:
            ax.plot(
                eval_epochs, eval_values, "--", color=EVAL_COLOR, marker=marker, label=eval_name
            )
        for epoch, lr in lr_cuts(history):
            ax.axvline(epoch - 0.5, color="0.45", linestyle=":", linewidth=1.2)
            ax.text(
                epoch - 0.5,
                0.98 if label_side == "top" else 0.02,
                f"lr {lr:g}",
                transform=ax.get_xaxis_transform(),
                rotation=90,
                ha="right",
                va=label_side,
                fontsize=8,
                color="0.3",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0.5, history[-1]["epoch"] + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        ax.legend(loc=legend_loc)
    ax_loss.set_title("loss" + " (log scale)" * (ax_loss.get_yscale() == "log"))
    ax_acc.set_title("accuracy")
    fig.suptitle(_curves_title(history, eval_name) + SYNTHETIC_NOTE * synthetic, fontsize=13)
    return fig


def _curves_title(history: list[dict], eval_name: str) -> str:
    """Name the best eval epoch: the number a reader of the curves looks for first."""
    title = f"Training curves, {len(history)} epoch{'s' * (len(history) != 1)}"
    scored = [row for row in history if row.get("val_accuracy") is not None]
    if not scored:
        return title
    best = max(scored, key=lambda row: row["val_accuracy"])
    return f"{title}: best {eval_name} accuracy {best['val_accuracy']:.2%} (epoch {best['epoch']})"


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "Confusion matrix",
    synthetic: bool = False,
) -> None:
    """Counts heat map, rows = true class and columns = predicted, overall accuracy in the title;
    ``synthetic`` says so in the title."""
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    n = len(class_names)
    if matrix.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {matrix.shape} for {n} classes")
    title += SYNTHETIC_NOTE * synthetic
    total = matrix.sum()
    if total > 0:
        correct = np.trace(matrix)
        title = f"{title}\naccuracy {correct / total:.2%} ({_count(correct)} / {_count(total)})"
    side = min(max(4.0, 0.65 * n + 2.0), MATRIX_INCHES)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8, label="count")
    if n <= ANNOTATED_CLASSES:  # beyond, a count would not fit its cell: the colour tells it
        size = 9 if n <= 12 else 6
        for (row, col), value in np.ndenumerate(matrix):
            color = "white" if image.norm(value) > 0.5 else "black"
            ax.text(col, row, _count(value), ha="center", va="center", color=color, fontsize=size)
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=class_names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, labels=class_names)
    if n > ANNOTATED_CLASSES:
        ax.tick_params(labelsize=4)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    io.save_atomically(path, lambda p: fig.savefig(p, format="png", dpi=150))


def _count(value) -> str:
    """Whole counts in full (``:g`` would write 1e+06); anything else to 3 significant digits."""
    return f"{value:d}" if isinstance(value, int | np.integer) else f"{value:.3g}"


def plot_degradation(
    curves: dict[str, list[tuple[str, list[dict]]]], path: str | os.PathLike
) -> None:
    """The 2015 paper's Figure 6: training error (bold) and test error (dashed) per epoch.

    ``curves`` maps a kind (``"plain"``, ``"residual"``) to ``(model name, history)`` pairs;
    each kind gets a panel, plain nets on the left, and one colour per depth.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 4.8), layout="constrained")
    axes = fig.subplots(1, len(curves), sharey=True, squeeze=False)[0]
    for ax, (kind, runs) in zip(axes, curves.items(), strict=True):
        for index, (name, history) in enumerate(runs):
            color = f"C{index}"
            epochs, train_error = _series(history, "accuracy")
            ax.plot(epochs, [100 * (1 - a) for a in train_error], color=color, lw=2.5, label=name)
            epochs, test_error = _series(history, "val_accuracy")
            ax.plot(epochs, [100 * (1 - a) for a in test_error], "--", color=color, lw=1)
        for epoch, rate in lr_cuts(runs[0][1]):
            ax.axvline(epoch - 0.5, color="0.5", ls=":", lw=1)
            ax.annotate(
                f"lr {rate:g}",
                (epoch - 0.5, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                fontsize=8,
                color="0.4",
            )
        ax.set_title(f"{kind} nets")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(title="bold: train, dashed: test", fontsize=9, title_fontsize=9)
    axes[0].set_ylabel("error (%)")
    fig.suptitle("Degradation: training and test error of plain and residual nets")
    io.save_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def plot_depth(rows: list[dict], path: str | os.PathLike) -> None:
    """Final test error against depth, ours beside the paper's published numbers."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.subplots()
    depths = [row["depth"] for row in rows]
    ax.plot(depths, [row["test_error"] for row in rows], "o-", label="this run")
    published = [(row["depth"], row["paper_test_error"]) for row in rows if row["paper_test_error"]]
    if published:
        ax.plot(*zip(*published, strict=True), "s--", color="0.4", label="He et al. 2015")
    for row in rows:
        ax.annotate(
            row["model"],
            (row["depth"], row["test_error"]),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_xlabel("layers")
    ax.set_ylabel("test error (%)")
    ax.set_title("CIFAR-10 test error against depth")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    io.save_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
