"""SGD with PyTorch's update rule, so the notes' hyper-parameters mean what they meant there."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_resnet")
class TorchSGD(keras.optimizers.SGD):
    """``torch.optim.SGD`` in Keras: coupled L2 weight decay and a learning-rate-free buffer.

    PyTorch adds ``l2 * w`` to the gradient *before* momentum (``weight_decay=5e-4`` in the
    notes); Keras's ``weight_decay`` argument is decoupled (AdamW-style) and trains a different
    model. PyTorch also keeps ``lr`` out of the momentum buffer, so a learning-rate cut takes
    effect at once instead of being smeared over the buffer's memory. The update is::

        g = grad + l2 * w
        buf = momentum * buf + g
        w = w - lr * (g + momentum * buf if nesterov else buf)

    Like PyTorch, the decay applies to every trainable weight, BatchNorm's included.
    """

    def __init__(self, learning_rate=0.1, momentum=0.9, nesterov=False, l2=0.0, **kwargs):
        super().__init__(
            learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, **kwargs
        )
        if not isinstance(l2, (int, float)) or not l2 >= 0:
            raise ValueError(f"l2 must be a non-negative number, got {l2!r}")
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2:
            gradient = gradient + self.l2 * variable
        if self.momentum == 0:
            self.assign_sub(variable, learning_rate * gradient)
            return
        buffer = self.momentums[self._get_variable_index(variable)]
        self.assign(buffer, self.momentum * buffer + gradient)
        step = gradient + self.momentum * buffer if self.nesterov else buffer
        self.assign_sub(variable, learning_rate * step)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}
