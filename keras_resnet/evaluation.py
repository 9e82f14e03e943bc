"""Test-set metrics: loss, accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import keras
import numpy as np

from keras_resnet.data import CifarBatches, Split


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

    def logits(images: np.ndarray) -> np.ndarray:
        batches = CifarBatches(
            Split(images, split.labels), batch_size, devices=devices, shard=shard
        )
        if shard[1] == 1:
            predicted = model.predict(batches, verbose=0)
        else:
            predicted = _predict_across_hosts(model, batches, shard[1])
        return np.asarray(predicted, dtype=np.float64)[: len(split)]  # without the padding

    if not flip_tta:
        return logits(split.images)
    return (logits(split.images) + logits(split.images[:, :, ::-1])) / 2


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
    for images, _ in batches:
        global_shape = (len(images) * processes, *images.shape[1:])
        layout = distribution.get_data_layout(global_shape).backend_layout
        x = jax.make_array_from_process_local_data(layout, images.astype("float32"), global_shape)
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
