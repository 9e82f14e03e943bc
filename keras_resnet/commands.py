"""The ``evaluate`` and ``predict`` commands: work on saved ``.keras`` models."""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np

from keras_resnet import data as cifar
from keras_resnet import images, io, reports
from keras_resnet.evaluation import evaluate as evaluate_model
from keras_resnet.training import RunError


def load_model(path: str | Path) -> keras.Model:
    """Load a ``.keras`` file in safe mode; any failure names the file."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{str(path)!r} is not a file")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # a corrupt zip, a foreign layer, unsafe code: one clear line
        raise RunError(
            f"cannot load model {str(path)!r}: {type(error).__name__}: {error}"
        ) from error


def evaluate(args: argparse.Namespace) -> int:
    model = load_model(args.model_path)
    data = (
        cifar.synthetic_cifar10(seed=args.seed)
        if args.synthetic
        else cifar.load_cifar10(args.data_dir)
    )
    metrics = {
        "model": model.name,
        **evaluate_model(model, data.test, cifar.CLASS_NAMES, args.batch_size),
    }
    metrics["data"] = data.source
    out = Path(args.output_dir) if args.output_dir else Path(args.model_path).parent
    io.write_json(out / "metrics.json", metrics)
    reports.plot_confusion_matrix(
        np.asarray(metrics["confusion_matrix"]), cifar.CLASS_NAMES, out / "confusion_matrix.png"
    )
    accuracy, loss = metrics["test_accuracy"], metrics["test_loss"]
    print(f"test accuracy: {100 * accuracy:.2f}%  test loss: {loss:.4f}")
    for name, accuracy in metrics["per_class_accuracy"].items():
        print(f"  {name:<11} {100 * accuracy:6.2f}%")
    print(f"wrote {out / 'metrics.json'} and {out / 'confusion_matrix.png'}")
    return 0


def predict(args: argparse.Namespace) -> int:
    model = load_model(args.model_path)
    height, width = (side or 32 for side in model.input_shape[1:3])
    batch = np.stack([images.load_image(path, (height, width)) for path in args.images])
    probabilities = images.softmax(np.asarray(model.predict(batch, verbose=0), dtype=np.float64))
    for path, row in zip(args.images, probabilities, strict=True):
        ranked = images.top_k(row, cifar.CLASS_NAMES, k=args.top)
        print(f"{path}: " + ", ".join(f"{name} {100 * p:.1f}%" for name, p in ranked))
    return 0
