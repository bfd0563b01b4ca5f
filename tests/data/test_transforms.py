"""The train and eval transforms of the published recipe (docs/data.md): geometry, normalisation, per-sample seeding,
processor statistics."""

from __future__ import annotations

import hashlib
import pickle

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from peft_puma.data import make_eval_transform, make_train_transform
from peft_puma.data.transforms import processor_statistics
from peft_puma.errors import InvalidConfigError, InvalidInputError

HALF = [0.5, 0.5, 0.5]


def _halves(width: int, height: int) -> Image.Image:
    """Left half black, right half white."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, width // 2 :] = 255
    return Image.fromarray(pixels)


def _batch(*images: Image.Image) -> dict[str, list]:
    return {"image": list(images), "label": list(range(len(images)))}


def test_eval_normalises_with_the_given_statistics() -> None:
    out = make_eval_transform(16, [0.2, 0.4, 0.6], [0.5, 0.25, 0.125])(
        _batch(Image.new("RGB", (40, 30), (51, 102, 153)))
    )
    expected = torch.tensor([(0.2 - 0.2) / 0.5, (0.4 - 0.4) / 0.25, (0.6 - 0.6) / 0.125])
    assert out["pixel_values"].shape == (1, 3, 16, 16) and out["pixel_values"].dtype == torch.float32
    torch.testing.assert_close(out["pixel_values"][0, :, 5, 5], expected, atol=1e-6, rtol=0)
    assert out["label"] == [0] and "image" not in out


def test_eval_resize_is_256_for_224_and_proportional() -> None:
    assert make_eval_transform(224, HALF, HALF).resize_size == 256
    assert make_eval_transform(32, HALF, HALF).resize_size == 36  # floor(32 * 256 / 224)
    assert make_eval_transform(384, HALF, HALF).resize_size == 438


def test_eval_resizes_the_shorter_side_then_crops_the_centre() -> None:
    # 400x200 -> shorter side 36 -> 72x36; the centre 32 columns span 20..51, black (< 36) for the first 16.
    pixels = make_eval_transform(32, HALF, HALF)(_batch(_halves(400, 200)))["pixel_values"][0]
    assert pixels.shape == (3, 32, 32)
    assert (pixels[:, :, :14] < -0.95).all() and (pixels[:, :, 18:] > 0.95).all()


def test_eval_is_deterministic_and_converts_greyscale_to_rgb() -> None:
    transform = make_eval_transform(24, HALF, HALF)
    grey = Image.fromarray(np.arange(64 * 48, dtype=np.uint32).reshape(48, 64).astype(np.uint8), mode="L")
    first, second = transform(_batch(grey))["pixel_values"], transform(_batch(grey))["pixel_values"]
    assert first.shape == (1, 3, 24, 24)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first[0, 0], first[0, 2], rtol=0, atol=0)


def _places(*positions: int, epoch: int = 0) -> dict[str, list[int]]:
    return {"epoch": [epoch] * len(positions), "position": list(positions)}


def test_train_crop_area_and_aspect_follow_scale_and_ratio() -> None:
    transform = make_train_transform(8, HALF, HALF, seed=0)
    generator = torch.Generator().manual_seed(0)
    areas, ratios = [], []
    for _ in range(300):
        left, top, width, height = transform.crop_box(200, 150, generator)
        assert 0 <= left and left + width <= 200 and 0 <= top and top + height <= 150
        areas.append(width * height / (200 * 150))
        ratios.append(width / height)
    assert 0.19 <= min(areas) < 0.3 and max(areas) <= 1.0
    assert min(ratios) >= 0.74 and max(ratios) <= 1.35


def test_train_crop_falls_back_to_a_centre_crop_like_torchvision() -> None:
    transform = make_train_transform(8, HALF, HALF, seed=0)
    box = transform.crop_box(1000, 10, torch.Generator().manual_seed(0))
    assert box == (493, 0, 13, 10)  # too wide for any drawn box: centre, ratio clamped


def test_train_flips_about_half_the_samples() -> None:
    transform = make_train_transform(32, HALF, HALF, scale=(1.0, 1.0), seed=0)
    pixels = transform({**_batch(*[_halves(32, 32)] * 60), **_places(*range(60))})["pixel_values"]
    left_columns = pixels[:, 0, :, :8].mean(dim=(1, 2))
    flipped = (left_columns > 0).sum().item()  # white on the left: flipped
    assert 15 <= flipped <= 45 and ((left_columns < -0.9) | (left_columns > 0.9)).all()


def _flipped(hflip_probability: float | None, count: int = 12) -> list[bool]:
    """Which of ``count`` half-black, half-white samples come out flipped (white on the left), at positions 0.."""
    options = {} if hflip_probability is None else {"hflip_probability": hflip_probability}
    transform = make_train_transform(32, HALF, HALF, scale=(1.0, 1.0), seed=0, **options)
    pixels = transform({**_batch(*[_halves(32, 32)] * count), **_places(*range(count))})["pixel_values"]
    return (pixels[:, 0, :, :8].mean(dim=(1, 2)) > 0).tolist()


def test_hflip_probability_zero_never_flips_and_one_always_flips() -> None:
    assert _flipped(0.0, 60) == [False] * 60
    assert _flipped(1.0, 60) == [True] * 60
    assert _flipped(0.5) == _flipped(None)


def test_the_default_augmentation_is_the_published_random_stream() -> None:
    """Pinned before crop_scale and hflip_probability became keys: with the defaults, every sample's crop and flip
    (hence every batch of every run) is what it was; the flip's draw is taken whatever the probability."""
    assert _flipped(None) == [True, True, True, False, False, False, True, True, True, True, True, False]
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(6)]
    pixels = make_train_transform(16, HALF, HALF, seed=3)({**_batch(*images), **_places(*range(4, 10), epoch=2)})
    as_bytes = ((pixels["pixel_values"] * 0.5 + 0.5) * 255).round().to(torch.uint8).numpy().tobytes()
    assert hashlib.sha256(as_bytes).hexdigest() == "6db283c1b92ebeb6610b70ddbcaf031f15957757d97ec5d8350369283a5d4789"


def test_a_sample_is_augmented_by_its_seed_epoch_and_position_only() -> None:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(3)]
    transform = make_train_transform(16, HALF, HALF, seed=3)
    batch = transform({**_batch(*images), **_places(4, 5, 6, epoch=2)})["pixel_values"]
    alone = transform({**_batch(images[1]), **_places(5, epoch=2)})["pixel_values"][0]
    torch.testing.assert_close(alone, batch[1], rtol=0, atol=0)  # not on the batch, nor on what was drawn before
    copy = pickle.loads(pickle.dumps(transform))  # what a DataLoader worker holds
    torch.testing.assert_close(copy({**_batch(images[1]), **_places(5, epoch=2)})["pixel_values"][0], alone)
    same = make_train_transform(16, HALF, HALF, seed=3)({**_batch(images[1]), **_places(5, epoch=2)})
    torch.testing.assert_close(same["pixel_values"][0], alone, rtol=0, atol=0)
    for seed, epoch, position in ((4, 2, 5), (3, 3, 5), (3, 2, 6)):
        other = make_train_transform(16, HALF, HALF, seed=seed)({**_batch(images[1]), **_places(position, epoch=epoch)})
        assert not torch.equal(other["pixel_values"][0], alone)


def test_the_train_transform_needs_each_rows_place() -> None:
    transform = make_train_transform(8, HALF, HALF)
    with pytest.raises(InvalidInputError, match=r"lacks \['epoch', 'position'\]"):
        transform(_batch(Image.new("RGB", (8, 8))))


def test_with_transform_rows_get_pixel_values() -> None:
    rows = datasets.Dataset.from_dict({"image": [Image.new("RGB", (20, 10))] * 3, "label": [5, 6, 7]})
    rows = rows.cast_column("image", datasets.Image()).with_transform(make_eval_transform(8, HALF, HALF))
    assert rows[1]["pixel_values"].shape == (3, 8, 8) and rows[1]["label"] == 6
    assert rows[0:3]["pixel_values"].shape == (3, 3, 8, 8)


@pytest.mark.parametrize(
    ("processor_class", "kwargs", "size", "mean"),
    [
        ("ViTImageProcessor", {"image_mean": HALF, "image_std": HALF}, 224, (0.5, 0.5, 0.5)),
        ("CLIPImageProcessor", {}, 224, (0.48145466, 0.4578275, 0.40821073)),
        (
            "BitImageProcessor",
            {"crop_size": {"height": 196, "width": 196}, "image_mean": [0.485, 0.456, 0.406]},
            196,
            (0.485, 0.456, 0.406),
        ),
    ],
)
def test_statistics_come_from_the_image_processor(processor_class: str, kwargs: dict, size: int, mean: tuple) -> None:
    import transformers  # imported here: it is slow, and only these cases need it

    processor = getattr(transformers, processor_class)(**kwargs)
    got_size, got_mean, _ = processor_statistics(processor)
    assert got_size == size and got_mean == pytest.approx(mean)
    assert make_eval_transform(image_processor=processor).image_size == size
    assert make_train_transform(112, image_processor=processor).image_size == 112  # explicit size wins


def test_bad_arguments_and_inputs_are_named() -> None:
    with pytest.raises(InvalidConfigError, match="pass image_size, mean and std"):
        make_train_transform(224)
    with pytest.raises(InvalidConfigError, match="need 3 values"):
        make_eval_transform(224, [0.5], [0.5])
    with pytest.raises(InvalidConfigError, match="scale"):
        make_train_transform(224, HALF, HALF, scale=(0.5, 0.2))
    with pytest.raises(InvalidConfigError, match=r"hflip_probability must lie in \[0, 1\], got 1.5"):
        make_train_transform(224, HALF, HALF, hflip_probability=1.5)
    with pytest.raises(InvalidInputError, match="expected a PIL image"):
        make_eval_transform(8, HALF, HALF)({"image": [np.zeros((8, 8, 3))]})
    with pytest.raises(InvalidInputError, match="no 'image' column"):
        make_eval_transform(8, HALF, HALF)({"pixels": []})
