"""User images of any mode and size load as the model's input, and every bad file says why."""

import os
import threading
import warnings

import numpy as np
import pytest
from PIL import Image

from keras_resnet.trainer.data import CLASS_NAMES
from keras_resnet.trainer.images import ImageError, load_image, softmax, top_k

SIZE = (32, 32)


def _gradient(width: int, height: int) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    y = np.linspace(0, 255, height, dtype=np.uint8)
    return np.stack(np.broadcast_arrays(x[None, :], y[:, None], x[None, :] // 2), axis=-1)


def _save(tmp_path, name: str, img: Image.Image):
    path = tmp_path / name
    img.save(path)
    return path


def _assert_input(array: np.ndarray) -> None:
    assert array.shape == (*SIZE, 3)
    assert array.dtype == np.uint8


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("gray.png", lambda: Image.fromarray(_gradient(40, 30)[..., 0])),
        ("rgba.png", lambda: Image.fromarray(_gradient(40, 30)).convert("RGBA")),
        ("gray_alpha.png", lambda: Image.fromarray(_gradient(40, 30)).convert("LA")),
        ("palette.gif", lambda: Image.fromarray(_gradient(40, 30)).convert("P")),
        ("photo.jpg", lambda: Image.fromarray(_gradient(1000, 700))),
        ("small.bmp", lambda: Image.fromarray(_gradient(8, 5))),
    ],
)
def test_loads_any_mode_and_size(tmp_path, name, make):
    _assert_input(load_image(_save(tmp_path, name, make()), SIZE))


def test_resizes_to_height_width(tmp_path):
    path = _save(tmp_path, "wide.png", Image.fromarray(_gradient(100, 50)))
    assert load_image(path, (24, 40)).shape == (24, 40, 3)


def test_transparency_becomes_white(tmp_path):
    clear = Image.new("RGBA", (50, 50), (255, 0, 0, 0))
    _assert_input(image := load_image(_save(tmp_path, "clear.png", clear), SIZE))
    assert (image == 255).all()


def test_sixteen_bit_grayscale_keeps_its_tones(tmp_path):
    mid_gray = Image.fromarray(np.full((20, 20), 0x8000, dtype=np.uint16))
    image = load_image(_save(tmp_path, "deep.png", mid_gray), SIZE)
    assert (image == 128).all()


def _assert_fails(path, match: str) -> None:
    with pytest.raises(ImageError, match=match) as info:
        load_image(path, SIZE)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    _assert_fails(tmp_path / "nowhere.png", "no such file")


def test_directory(tmp_path):
    _assert_fails(tmp_path, "directory")


def test_text_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture\n")
    _assert_fails(path, "not an image")


def test_truncated_png(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    path = _save(tmp_path, "cut.png", Image.fromarray(noise))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _assert_fails(path, "truncated")


def test_decompression_bomb(tmp_path, monkeypatch):
    path = _save(tmp_path, "bomb.png", Image.fromarray(_gradient(100, 100)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL refuses above twice this
    _assert_fails(path, "too large")


def test_an_image_between_pillow_s_limit_and_twice_it_is_refused_not_warned_about(
    tmp_path, monkeypatch
):
    path = _save(tmp_path, "big.png", Image.fromarray(_gradient(40, 40)))  # 1,600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's own warning would fail the test here
        _assert_fails(path, r"too large to open safely \(Image size \(1600 pixels\) exceeds limit")


def test_a_named_pipe_is_refused_at_once_not_read(tmp_path):
    fifo = tmp_path / "a-fifo.jpg"
    os.mkfifo(fifo)
    failures = []

    def read() -> None:
        try:
            load_image(fifo, SIZE)
        except ImageError as error:
            failures.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # unblock the reader so that the test process can end
        with open(fifo, "wb"):
            pass
        pytest.fail("load_image waited on the pipe")
    assert "a-fifo.jpg: not a regular file" in str(failures[0])


def test_softmax_is_a_stable_distribution():
    probabilities = softmax(np.array([[1000.0, 1001.0, 999.0], [0.0, 0.0, 0.0]]))
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0)
    np.testing.assert_allclose(probabilities[1], 1 / 3)
    assert probabilities[0].argmax() == 1


def test_top_k_sorts_likeliest_first():
    probabilities = softmax(np.arange(10.0)[::-1] * 0.5 + np.eye(10)[6] * 10)
    ranked = top_k(probabilities, CLASS_NAMES, k=3)
    assert [name for name, _ in ranked] == ["frog", "airplane", "automobile"]
    scores = [p for _, p in ranked]
    assert scores == sorted(scores, reverse=True)
    assert len(top_k(probabilities, CLASS_NAMES, k=20)) == 10


def test_top_k_rejects_mismatched_classes():
    with pytest.raises(ValueError, match="3 classes"):
        top_k(np.ones(10) / 10, CLASS_NAMES[:3])
