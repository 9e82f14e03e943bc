"""Test-set metrics (loss, accuracy, per-class accuracy, confusion matrix) of a model being
trained or saved, and the top classes of users' own image files."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from keras_resnet.errors import ModelFileError, RunFolderError
from keras_resnet.models import ClassNames, class_names_of, dataset_of
from keras_resnet.trainer import images, io, reports
from keras_resnet.trainer.data import CifarBatches, Split, load_dataset, synthetic_cifar10
from keras_resnet.trainer.run_folder import evaluation_paths


def predict_logits(
    model: keras.Model,
    split: Split,
    batch_size: int = 1000,
    flip_tta: bool = False,
    devices: int = 1,
    shard: tuple[int, int] = (0, 1),
) -> np.ndarray:
    """Logits of every image, in order, without random augmentation.

    ``flip_tta`` averages them with the logits of the mirror images (flip test-time
    augmentation): the network was trained on both, so the mean is a cheap, better estimate.
    ``devices`` pads the last batch to split evenly over a data-parallel run's devices; with
    ``shard=(i, n)`` process ``i`` of a multi-host run feeds its slice and every process gets
    all the logits back.
    """

    def logits(flip: bool) -> np.ndarray:
        batches = CifarBatches(split, batch_size, devices=devices, shard=shard, flip=flip)
        if shard[1] == 1:
            predicted = model.predict(batches, verbose=0)
        else:
            predicted = _predict_across_hosts(model, batches, shard[1])
        return np.asarray(predicted, dtype=np.float64)[: len(split)]  # without the padding

    if not flip_tta:
        return logits(False)
    return (logits(False) + logits(True)) / 2


_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _predict_across_hosts(model: keras.Model, batches: CifarBatches, processes: int):
    """The forward pass of a multi-host run, gathered on every process.

    Keras's ``predict`` reads its outputs back to the host, which fails for arrays that live on
    other hosts' devices; this runs the same inference graph and gathers the logits first.
    """
    import jax
    from jax.experimental import multihost_utils

    distribution = keras.distribution.distribution()
    if model not in _FORWARD:  # compiled once per model, not once per epoch
        # A weak reference, so the cache entry does not keep the model alive.
        owner = weakref.ref(model)
        _FORWARD[model] = jax.jit(
            lambda t, n, x: owner().stateless_call(t, n, x, training=False)[0]
        )
    forward = _FORWARD[model]
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    outputs = []
    for batch, _ in batches:
        global_shape = (len(batch) * processes, *batch.shape[1:])
        layout = distribution.get_data_layout(global_shape).backend_layout
        x = jax.make_array_from_process_local_data(layout, batch.astype("float32"), global_shape)
        logits = forward(trainable, non_trainable, x)
        outputs.append(multihost_utils.process_allgather(logits, tiled=True))
    return np.concatenate(outputs)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy, as the training loss computes it."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def classification_metrics(
    labels: np.ndarray, predictions: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Accuracy, per-class accuracy and the confusion matrix (rows: true, columns: predicted)."""
    n = len(class_names)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    return {
        "test_accuracy": float((labels == predictions).mean()),
        "per_class_accuracy": dict(zip(class_names, map(float, per_class), strict=True)),
        "confusion_matrix": matrix.tolist(),
    }


def evaluate(
    model: keras.Model,
    split: Split,
    class_names: Sequence[str],
    batch_size: int = 1000,
    flip_tta: bool = False,
    devices: int = 1,
    shard: tuple[int, int] = (0, 1),
) -> dict:
    """Test loss and the metrics above in one pass over ``split`` (two with ``flip_tta``), as a
    JSON-ready dict."""
    logits = predict_logits(model, split, batch_size, flip_tta, devices, shard)
    metrics = classification_metrics(split.labels, logits.argmax(axis=-1), class_names)
    return {"test_loss": cross_entropy(logits, split.labels), **metrics}


def check_classifier(model: keras.Model, path: str) -> tuple[int | None, int | None, int]:
    """The (height, width) of ``model``'s input and its number of classes, if it takes RGB
    images and scores classes; anything else would fail later, deep in Keras, without naming
    the file."""
    try:
        shapes = model.input_shape, model.output_shape
    except AttributeError:  # an unbuilt Sequential has neither
        shapes = None, None
    image_in = isinstance(shapes[0], tuple) and len(shapes[0]) == 4 and shapes[0][-1] == 3
    scores = isinstance(shapes[1], tuple) and len(shapes[1]) == 2 and shapes[1][1]
    # A pooled backbone also outputs (None, channels); a classifier ends in its Dense head.
    if not image_in or not scores or not isinstance(head_of(model), keras.layers.Dense):
        raise ModelFileError(
            f"model {path!r} maps {shapes[0]} to {shapes[1]}; a classifier maps "
            "(None, height, width, 3) images to (None, classes) class scores with a Dense head"
        )
    return shapes[0][1], shapes[0][2], shapes[1][1]


def head_of(model: keras.Model) -> keras.layers.Layer:
    """The layer that scores the classes: the last one, or the one before ``ClassNames``."""
    return next(layer for layer in reversed(model.layers) if not isinstance(layer, ClassNames))


def class_names(model: keras.Model, path: str) -> tuple[str, ...] | None:
    """The names saved in ``model``, checked against its outputs; None if it has none."""
    names = class_names_of(model)
    classes = check_classifier(model, path)[2]
    if names is not None and len(names) != classes:
        raise ModelFileError(f"model {path!r} scores {classes} classes but names {len(names)}")
    return names


def evaluate_saved(
    model: keras.Model,
    path: str,
    *,
    data_dir: str | None,
    synthetic: bool,
    seed: int,
    batch_size: int,
    dataset: str | None,
    max_memory_gb: float,
) -> dict:
    """``evaluate``'s metrics of a loaded model on the test split of ``dataset`` (by default
    the one saved in the model, else CIFAR-10), resized to the model's input, or on the
    generated test set."""
    height, width, classes = check_classifier(model, path)
    names = class_names(model, path)
    dataset = dataset or dataset_of(model) or "cifar10"
    if synthetic or dataset == "synthetic":
        data = synthetic_cifar10(seed=seed)
    else:
        size = (height, width) if height and width else None
        data = load_dataset(dataset, data_dir, size, max_memory_gb)
    if classes != len(data.class_names) or (names and names != data.class_names):
        raise ModelFileError(
            f"model {path!r} scores {classes} classes {list(names or [])}; {data.name} has "
            f"{len(data.class_names)}: {list(data.class_names)}"
        )
    return {
        "model": model.name,
        **evaluate(model, data.test, data.class_names, batch_size),
        "data": data.source,
        "dataset": data.name,
        "class_names": list(data.class_names),
    }


def write_report(metrics: dict, model_path: Path, output_dir: Path | None) -> tuple[Path, Path]:
    """Write ``evaluate``'s metrics and confusion matrix; return their paths."""
    metrics_path, figure_path = evaluation_paths(model_path, output_dir)
    try:
        io.write_json(metrics_path, metrics)
        reports.plot_confusion_matrix(
            np.asarray(metrics["confusion_matrix"]),
            metrics["class_names"],
            figure_path,
            synthetic=metrics["data"] == "synthetic",
        )
    except OSError as error:
        raise RunFolderError(
            f"cannot write the results to {str(metrics_path.parent)!r}: {error}"
        ) from error
    return metrics_path, figure_path


def classify_files(
    model: keras.Model, path: str, files: Sequence[Path], top: int
) -> list[list[tuple[str, float]]]:
    """The ``top`` likeliest (class, probability) pairs of each image file; a model without
    saved class names gets "class <index>" instead."""
    height, width, classes = check_classifier(model, path)
    height, width = height or 32, width or 32
    names = class_names(model, path) or tuple(f"class {i}" for i in range(classes))
    batch = np.stack([images.load_image(file, (height, width)) for file in files])
    outputs = np.asarray(model.predict(batch, verbose=0), dtype=np.float64)
    if getattr(head_of(model), "activation", None) is not keras.activations.softmax:
        outputs = images.softmax(outputs)  # logits; a softmax head's outputs are already these
    return [images.top_k(row, names, k=top) for row in outputs]
