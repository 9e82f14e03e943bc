"""Trains a tiny net under a given topology and prints its weights: run by test_distributed.py.

Usage: python _distributed_worker.py OUTPUT_DIR DEVICES|all [COORDINATOR PROCESSES PROCESS_ID]
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from helpers import TINY_MODEL, TINY_SPEC, Interrupt  # noqa: E402

import keras_resnet  # noqa: E402, F401
from keras_resnet import models  # noqa: E402
from keras_resnet.trainer import distributed, io  # noqa: E402
from keras_resnet.trainer.config import TrainConfig  # noqa: E402
from keras_resnet.trainer.fit import train  # noqa: E402

models.register(TINY_MODEL, **TINY_SPEC)

output_dir, devices, *cluster = sys.argv[1:]
if cluster:
    topology = distributed.setup(None, cluster[0], int(cluster[1]), int(cluster[2]))
else:  # "all": every device; the cluster, if any, from Keras's environment variables
    topology = distributed.setup(None if devices == "all" else int(devices))

writes = []
real_atomic_path = io.atomic_path
io.atomic_path = lambda path: writes.append(str(path)) or real_atomic_path(path)

config = TrainConfig(
    model=TINY_MODEL, epochs=2, batch_size=64, synthetic=True, train_size=256,
    output_dir=output_dir,
)  # fmt: skip


class KeepWeights(keras.callbacks.Callback):
    """This process's own copy of the final weights (each holds a full replica)."""

    def on_train_end(self, logs=None):
        self.weights = [np.asarray(w.value.addressable_data(0)) for w in self.model.weights]


kept = KeepWeights()
stop = [Interrupt(0)] if os.environ.get("STOP_AFTER_FIRST_EPOCH") else []
try:
    train(config, topology=topology, callbacks=[kept, *stop], verbose=0)
except KeyboardInterrupt:
    print("INTERRUPTED", json.dumps([topology.process_id, topology.devices]))
    sys.exit(0)
history = json.loads((config.run_dir / "state.json").read_text())["history"]
print(
    "RESULT",
    json.dumps(
        {
            "devices": topology.devices,
            "process_id": topology.process_id,
            "writes": len(writes),
            "losses": [row["loss"] for row in history],
            "weights": [w.tolist() for w in kept.weights],
        }
    ),
)
