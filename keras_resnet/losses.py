"""Cross-entropy on integer labels with label smoothing, which Keras's sparse loss lacks."""

from __future__ import annotations

import keras
from keras import ops

from keras_resnet.checks import is_number


@keras.saving.register_keras_serializable(package="keras_resnet")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """``CategoricalCrossentropy(label_smoothing=s)`` on integer labels of shape (N,) or (N, 1).

    Keras 3's ``SparseCategoricalCrossentropy`` has no ``label_smoothing``, and one-hot labels
    would change the data pipeline; this builds the smoothed target ``(1 - s) * one_hot + s / K``
    inside the loss instead. It always computes in float32 (its ``dtype`` is fixed), whatever
    the model's precision: bfloat16 logs and sums would cost the loss its accuracy.
    """

    def __init__(
        self,
        label_smoothing: float = 0.0,
        from_logits: bool = True,
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction, dtype="float32")
        if not is_number(label_smoothing) or not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if not isinstance(from_logits, bool):
            raise ValueError(f"from_logits must be True or False, got {from_logits!r}")
        self.label_smoothing = float(label_smoothing)
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):
            labels = ops.squeeze(labels, axis=-1)
        classes = y_pred.shape[-1]
        target = ops.one_hot(labels, classes, dtype="float32")
        target = target * (1.0 - self.label_smoothing) + self.label_smoothing / classes
        return ops.categorical_crossentropy(target, y_pred, from_logits=self.from_logits)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "label_smoothing": self.label_smoothing,
            "from_logits": self.from_logits,
        }
