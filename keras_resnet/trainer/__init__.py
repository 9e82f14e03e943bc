"""The CIFAR-10 trainer that ``train.py`` runs, built on the library (``keras_resnet``).

tfds -> ``data`` (uint8 arrays, shuffled batches) -> ``fit.train`` (``model.fit`` with the
callbacks) -> ``run_folder`` (checkpoints, state, metrics, figures). ``config`` says what a
run is; ``evaluation`` and ``reports`` score and draw it; ``experiments`` runs several.
Its names are imported when first used: ``config`` checks a run's settings without Keras.
"""

from keras_resnet._lazy import attributes

__all__ = ["RECIPES", "RunFolder", "TrainConfig", "train"]
__getattr__ = attributes(
    __name__,
    {"RECIPES": "config", "TrainConfig": "config", "train": "fit", "RunFolder": "run_folder"},
)
