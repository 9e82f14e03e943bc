"""What the tfds and folder loaders share: how ``--dataset`` names a folder, the unit of
``max_memory_gb``, and TensorFlow kept off the GPU (both read through it)."""

from keras_resnet.errors import DataUnavailableError

FOLDER = "folder:"  # --dataset folder:PATH
GIGABYTE = 2**30


def hide_gpus_from_tensorflow() -> None:
    """tfds reads through TensorFlow; it must never reserve GPU memory that JAX needs."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise DataUnavailableError(
            "Reading datasets needs TensorFlow (tensorflow-cpu), which is not installed: "
            "pip install -r requirements.txt, or train on --synthetic data."
        ) from error
    tf.config.set_visible_devices([], "GPU")
