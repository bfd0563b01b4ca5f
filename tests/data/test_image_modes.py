"""Every image mode becomes the model's 8-bit RGB by one rule, wherever an image is read (docs/collections.md, "Image
modes"): training, evaluation, embedding a folder, and the checker; an image that cannot be decoded is named."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from peft_puma.data.images import check_image, decode_image, open_rgb, to_rgb
from peft_puma.data.transforms import make_eval_transform, make_train_transform
from peft_puma.errors import InvalidInputError


def _modes(tmp_path) -> dict[str, str]:
    """One small file per mode a user's folder may hold, each a flat grey of level 128 or its 16-bit equivalent."""
    files = {
        "grey.png": Image.new("L", (8, 8), 128),
        "rgba.png": Image.new("RGBA", (8, 8), (128, 128, 128, 255)),
        "cmyk.jpg": Image.new("CMYK", (8, 8), (0, 0, 0, 127)),
        "bilevel.png": Image.new("1", (8, 8), 1),
    }
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([128, 128, 128] * 256)
    files["palette.png"] = palette
    files["grey16.png"] = Image.fromarray(np.full((8, 8), 128 * 257, dtype=np.uint16))
    paths = {}
    for name, image in files.items():
        image.save(tmp_path / name)
        paths[name] = str(tmp_path / name)
    return paths


def test_sixteen_bit_greyscale_is_scaled_not_clipped_to_white(tmp_path):
    path = tmp_path / "ramp16.png"
    Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)).save(path)
    with Image.open(path) as opened:
        assert opened.mode == "I;16"
        clipped = np.asarray(opened.convert("RGB"))[..., 0]
        converted = np.asarray(to_rgb(opened))
    assert (clipped == 255).mean() > 0.9  # what PIL's own conversion does: almost all white
    expected = np.rint(np.arange(64).reshape(8, 8) * 1000 / 257).clip(0, 255)
    np.testing.assert_array_equal(converted[..., 0], expected)
    assert converted.shape == (8, 8, 3) and (converted[..., 0] == converted[..., 2]).all()


def test_transparent_pixels_are_composited_onto_white():
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))  # transparent black
    rgba.putpixel((1, 0), (255, 0, 0, 255))  # opaque red
    assert np.asarray(to_rgb(rgba)).tolist() == [[[255, 255, 255], [255, 0, 0]]]
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    assert np.asarray(to_rgb(palette)).tolist() == [[[255, 255, 255], [0, 0, 255]]]
    half = Image.new("LA", (1, 1), (0, 128))
    assert np.asarray(to_rgb(half)).tolist() == [[[127, 127, 127]]]


def test_every_mode_reads_the_same_grey_in_training_evaluation_embedding_and_the_checker(tmp_path):
    paths = _modes(tmp_path)
    expected = {name: 128 for name in paths}
    expected["bilevel.png"] = 255
    expected["cmyk.jpg"] = 128
    evaluation = make_eval_transform(8, [0.0] * 3, [1.0] * 3)
    training = make_train_transform(8, [0.0] * 3, [1.0] * 3, scale=(1.0, 1.0), hflip_probability=0.0)
    for name, path in paths.items():
        assert check_image(path, "full") is None, name
        folder = np.asarray(open_rgb(path))
        assert folder.shape == (8, 8, 3) and abs(int(folder.mean()) - expected[name]) <= 1, name
        stored = {"path": path, "bytes": None}
        decoded = datasets.Image().decode_example(stored)  # what a dataset row holds
        for image in (decoded, stored):  # decoded by datasets, or left to the transform
            pixels = evaluation({"image": [image]})["pixel_values"][0]
            torch.testing.assert_close(pixels, torch.from_numpy(folder.copy()).permute(2, 0, 1).float() / 255)
            batch = {"image": [image], "epoch": [0], "position": [0]}
            torch.testing.assert_close(training(batch)["pixel_values"][0], pixels)


def test_an_image_that_cannot_be_decoded_is_named_in_one_line(tmp_path):
    good = tmp_path / "good.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(good, quality=95)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InvalidInputError) as error:
        decode_image({"path": str(truncated), "bytes": None})
    message = str(error.value)
    assert "\n" not in message and str(truncated) in message and "check_images: full" in message
    with pytest.raises(InvalidInputError, match="an image stored in the dataset"):
        decode_image({"path": None, "bytes": b"not an image"})
    assert check_image(str(truncated), "header") is None  # the header is whole: only decoding finds it
    assert "truncated or corrupt" in check_image(str(truncated), "full")
