"""The notes' experiments, one command each.

``degradation``: plain and residual nets of the same depths trained with the same recipe
(the 2015 paper's Figure 6): deeper plain nets train *worse*, deeper residual nets do not.
``depth``: final test error against depth, beside the paper's published numbers.

Each model trains in its own run folder under the experiment's folder, so a stopped study
continues where it stopped and finished models are reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from keras_resnet.models import get_spec, layer_depth
from keras_resnet.trainer import io, reports
from keras_resnet.trainer.config import TrainConfig
from keras_resnet.trainer.fit import train
from keras_resnet.trainer.resume import is_finished
from keras_resnet.trainer.run_folder import RunFolder
from keras_resnet.trainer.state import read_state

# The two kinds of net of the degradation study, and their registry prefixes.
KINDS = (("plain", "plain"), ("residual", "resnet"))
# He et al. 2015, Table 6: CIFAR-10 test error (%) of the option-A residual nets.
PAPER_TEST_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}


def train_all(
    models: Sequence[str], output_dir: Path, recipe: str, **flags
) -> dict[str, RunFolder]:
    """Train each model (or continue it, or reuse it when finished) with one recipe."""
    for name in models:
        get_spec(name)  # every name is checked before the first model trains
    runs = {}
    for index, name in enumerate(models, start=1):
        config = TrainConfig(recipe=recipe, model=name, output_dir=str(output_dir / name), **flags)
        run = RunFolder(config.run_dir)
        if is_finished(run, config.epochs):
            print(f"[{index}/{len(models)}] {name}: finished earlier, reused")
        else:
            print(f"[{index}/{len(models)}] {name}: training")
            train(config)
        runs[name] = run
    return runs


def degradation(
    depths: Sequence[int] = (20, 32, 44, 56),
    output_dir: str | Path = "runs/degradation",
    recipe: str = "paper",
    **flags,
) -> Path:
    """Train ``plain{d}`` and ``resnet{d}`` for each depth; write the figure and the table."""
    output_dir = Path(output_dir)
    pairs = [(d, kind, f"{prefix}{d}") for d in depths for kind, prefix in KINDS]
    flags.setdefault("val_size", 0)  # Figure 6 plots test error; the fixed schedule ignores it
    runs = train_all([name for _, _, name in pairs], output_dir, recipe, **flags)

    curves, rows = {}, []
    for depth, kind, name in pairs:
        history = read_state(runs[name]).history
        curves.setdefault(kind, []).append((name, history))
        test_accuracy = runs[name].test_accuracy()
        rows.append(
            {
                "depth": depth,
                "kind": kind,
                "model": name,
                "train_error": 100 * (1 - history[-1]["accuracy"]),
                "test_error": 100 * (1 - test_accuracy),
            }
        )
    _write_csv(output_dir / "degradation.csv", rows)
    reports.plot_degradation(curves, output_dir / "degradation.png")
    print(f"Wrote {output_dir / 'degradation.png'} and {output_dir / 'degradation.csv'}")
    return output_dir


def depth(
    models: Sequence[str] = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"),
    output_dir: str | Path = "runs/depth",
    recipe: str = "paper",
    **flags,
) -> Path:
    """Train each model; tabulate and plot final test error against depth, with the paper's."""
    output_dir = Path(output_dir)
    flags.setdefault("val_size", 0)
    runs = train_all(models, output_dir, recipe, **flags)
    rows = []
    for name in models:
        layers = layer_depth(get_spec(name))
        published = PAPER_TEST_ERROR.get(layers) if name == f"resnet{layers}" else None
        rows.append(
            {
                "model": name,
                "depth": layers,
                "test_error": 100 * (1 - runs[name].test_accuracy()),
                "paper_test_error": published,
            }
        )
    _write_csv(output_dir / "depth.csv", rows)
    reports.plot_depth(rows, output_dir / "depth.png")
    print(f"Wrote {output_dir / 'depth.png'} and {output_dir / 'depth.csv'}")
    return output_dir


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(rows[0])

    def cell(value) -> str:
        return "" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = [",".join(columns), *(",".join(cell(row[c]) for c in columns) for row in rows)]
    io.write_text(path, "\n".join(lines) + "\n")
