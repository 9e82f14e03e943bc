"""The CIFAR-10 trainer that ``train.py`` runs, built on the library (``keras_resnet``).

tfds -> ``data`` (uint8 arrays, shuffled batches) -> ``fit.train`` (``model.fit`` with the
callbacks) -> ``run_folder`` (checkpoints, state, metrics, figures). ``config`` says what a
run is; ``evaluation`` and ``reports`` score and draw it; ``experiments`` runs several.
"""

from keras_resnet.trainer.config import RECIPES, TrainConfig
from keras_resnet.trainer.fit import train
from keras_resnet.trainer.run_folder import RunFolder

__all__ = ["RECIPES", "RunFolder", "TrainConfig", "train"]
