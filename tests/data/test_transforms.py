"""The train and eval transforms of method.md section 6: geometry, normalisation, seeding, processor statistics."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

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


def test_train_crop_area_and_aspect_follow_scale_and_ratio() -> None:
    transform = make_train_transform(8, HALF, HALF, seed=0)
    areas, ratios = [], []
    for _ in range(300):
        left, top, width, height = transform.crop_box(200, 150)
        assert 0 <= left and left + width <= 200 and 0 <= top and top + height <= 150
        areas.append(width * height / (200 * 150))
        ratios.append(width / height)
    assert 0.19 <= min(areas) < 0.3 and max(areas) <= 1.0
    assert min(ratios) >= 0.74 and max(ratios) <= 1.35


def test_train_crop_falls_back_to_a_centre_crop_like_torchvision() -> None:
    transform = make_train_transform(8, HALF, HALF, seed=0)
    assert transform.crop_box(1000, 10) == (493, 0, 13, 10)  # too wide for any drawn box: centre, ratio clamped


def test_train_flips_about_half_the_time() -> None:
    transform = make_train_transform(32, HALF, HALF, scale=(1.0, 1.0), seed=0)
    left_columns = torch.stack(
        [transform(_batch(_halves(32, 32)))["pixel_values"][0, 0, :, :8].mean() for _ in range(60)]
    )
    flipped = (left_columns > 0).sum().item()  # white on the left: flipped
    assert 15 <= flipped <= 45 and ((left_columns < -0.9) | (left_columns > 0.9)).all()


def test_train_is_reproducible_with_a_seed_and_varies_between_calls() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    a, b, c = (make_train_transform(16, HALF, HALF, seed=s) for s in (3, 3, 4))
    first_a, first_b = a(_batch(image))["pixel_values"], b(_batch(image))["pixel_values"]
    torch.testing.assert_close(first_a, first_b, rtol=0, atol=0)
    assert not torch.equal(first_a, c(_batch(image))["pixel_values"])
    assert not torch.equal(first_a, a(_batch(image))["pixel_values"])  # the stream continues


def test_each_dataloader_worker_gets_its_own_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    copy = pickle.loads(pickle.dumps(make_train_transform(16, HALF, HALF, seed=0)))
    outputs = {}
    for worker_seed in (100, 101, 100):
        info = SimpleNamespace(seed=worker_seed, id=worker_seed - 100)
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda info=info: info)
        outputs.setdefault(worker_seed, []).append(copy(_batch(image))["pixel_values"])
    assert not torch.equal(outputs[100][0], outputs[101][0])
    torch.testing.assert_close(outputs[100][0], outputs[100][1], rtol=0, atol=0)  # a new worker seed re-seeds


def test_real_dataloader_workers_differ_and_runs_repeat() -> None:
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    rows = datasets.Dataset.from_dict({"image": [image] * 4, "label": [0, 1, 2, 3]})
    rows = rows.cast_column("image", datasets.Image())
    train = rows.with_transform(make_train_transform(16, HALF, HALF, seed=0))

    def run() -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(
            train, batch_size=2, num_workers=2, generator=torch.Generator().manual_seed(0)
        )
        return [batch["pixel_values"] for batch in loader]

    first, second = run(), run()
    assert not torch.equal(first[0], first[1])  # batch 0 from worker 0, batch 1 from worker 1: same images
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


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
    with pytest.raises(InvalidInputError, match="expected a PIL image"):
        make_eval_transform(8, HALF, HALF)({"image": [np.zeros((8, 8, 3))]})
    with pytest.raises(InvalidInputError, match="no 'image' column"):
        make_eval_transform(8, HALF, HALF)({"pixels": []})
