"""The ``evaluate`` and ``predict`` commands: work on saved ``.keras`` models."""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np

from keras_resnet import data as cifar
from keras_resnet import images, io, reports
from keras_resnet.evaluation import evaluate as evaluate_model
from keras_resnet.saving import RunError, load_model


def _check_classifier(model: keras.Model, path: str) -> tuple[int | None, int | None]:
    """The (height, width) of ``model``'s input, if it takes RGB images and scores the classes;
    anything else would fail later, deep in Keras, without naming the file."""
    try:
        shapes = model.input_shape, model.output_shape
    except AttributeError:  # an unbuilt Sequential has neither
        shapes = None, None
    image_in = isinstance(shapes[0], tuple) and len(shapes[0]) == 4 and shapes[0][-1] == 3
    if not image_in or shapes[1] != (None, len(cifar.CLASS_NAMES)):
        raise RunError(
            f"model {path!r} maps {shapes[0]} to {shapes[1]}; a CIFAR-10 classifier maps "
            f"(None, height, width, 3) images to (None, {len(cifar.CLASS_NAMES)}) class scores"
        )
    return shapes[0][1], shapes[0][2]


def evaluate(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise ValueError(f"--seed must be 0 or more, got {args.seed}")
    model = load_model(args.model_path)
    sides = _check_classifier(model, args.model_path)
    if any(side not in (None, 32) for side in sides):
        raise RunError(f"model {args.model_path!r} takes {sides} images; CIFAR-10's are 32x32")
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
    try:
        io.write_json(out / "metrics.json", metrics)
        reports.plot_confusion_matrix(
            np.asarray(metrics["confusion_matrix"]), cifar.CLASS_NAMES, out / "confusion_matrix.png"
        )
    except OSError as error:
        raise RunError(f"cannot write the results to {str(out)!r}: {error}") from error
    accuracy, loss = metrics["test_accuracy"], metrics["test_loss"]
    print(f"test accuracy: {100 * accuracy:.2f}%  test loss: {loss:.4f}")
    for name, accuracy in metrics["per_class_accuracy"].items():
        print(f"  {name:<11} {100 * accuracy:6.2f}%")
    print(f"wrote {out / 'metrics.json'} and {out / 'confusion_matrix.png'}")
    return 0


def predict(args: argparse.Namespace) -> int:
    model = load_model(args.model_path)
    height, width = (side or 32 for side in _check_classifier(model, args.model_path))
    batch = np.stack([images.load_image(path, (height, width)) for path in args.images])
    probabilities = images.softmax(np.asarray(model.predict(batch, verbose=0), dtype=np.float64))
    for path, row in zip(args.images, probabilities, strict=True):
        ranked = images.top_k(row, cifar.CLASS_NAMES, k=args.top)
        print(f"{path}: " + ", ".join(f"{name} {100 * p:.1f}%" for name, p in ranked))
    return 0
