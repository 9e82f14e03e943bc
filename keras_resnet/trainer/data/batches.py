"""The batches ``model.fit`` reads, in an order that follows from ``(seed, epoch)`` alone, so a
resumed run sees exactly the data an unbroken one would have; they stay uint8 until they reach
the device, where the model augments and normalises them."""

import keras
import numpy as np

from keras_resnet.trainer.data.splits import Split


class CifarBatches(keras.utils.PyDataset):
    """Batches for ``model.fit``: shuffled per epoch when ``train`` is true, else in order.

    Call ``set_epoch`` before each epoch (``SetEpoch`` does it); the epoch's permutation comes
    from ``np.random.default_rng([seed, epoch])``.

    For data-parallel runs every batch must split evenly over ``devices``: a short last
    training batch that does not is dropped, and a short last evaluation batch is padded with
    copies of its last image (``predict_logits`` trims the extra rows). With ``shard=(i, n)``
    process ``i`` of ``n`` yields its contiguous slice of each global batch, so the processes
    together see exactly the batches a single process would. ``flip`` mirrors every image
    (flip test-time augmentation, without copying the split).
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        train: bool = False,
        seed: int = 0,
        devices: int = 1,
        shard: tuple[int, int] = (0, 1),
        flip: bool = False,
    ):
        super().__init__()
        self.split = split
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.devices = devices
        self.shard = shard
        self.flip = flip
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        n = len(self.split)
        self._order = (
            np.random.default_rng([self.seed, epoch]).permutation(n) if self.train else np.arange(n)
        )

    def __len__(self) -> int:
        full, rest = divmod(len(self.split), self.batch_size)
        return full + bool(rest and (not self.train or rest % self.devices == 0))

    def __getitem__(self, index: int):
        batch = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        if len(batch) % self.devices:
            batch = np.pad(batch, (0, -len(batch) % self.devices), mode="edge")
        rank, count = self.shard
        mine = batch[rank * len(batch) // count : (rank + 1) * len(batch) // count]
        images = self.split.images[mine]
        return (images[:, :, ::-1] if self.flip else images), self.split.labels[mine]
