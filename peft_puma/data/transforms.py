"""Train and eval image transforms of the published recipe (arXiv 2309.08944; docs/data.md), in torch + PIL.

- Train: RandomResizedCrop(size, scale 0.2-1.0, ratio 3/4-4/3, bicubic), horizontal flip (p = 0.5), normalise: the
  published values, which the crop's area range and the flip probability default to (the trainer's ``crop_scale``
  and ``hflip_probability`` keys change them, e.g. for 32 px glyphs whose accents a 20% crop cuts off).
- Eval: Resize(shorter side to ``size * 256 / 224``, bicubic), CenterCrop(size), normalise.

Both follow torchvision's definitions (torchvision cannot be installed beside our torch build) and normalise with the
backbone's own image-processor statistics (AugReg ViT: mean = std = 0.5). They are batch callables: they take a batch
of rows and return ``pixel_values`` (float32, ``B x 3 x H x W``) with the other columns passed through; the eval
transform suits ``datasets.Dataset.with_transform``.

Seeding: the crop and flip of a training sample are drawn from a generator seeded by :func:`sample_seed` of the
transform's ``seed``, the epoch and the sample's position in that epoch's order (the ``epoch`` and ``position`` columns
of the batch, which :func:`peft_puma.data.make_train_loader` supplies). So a sample's augmentation depends on nothing
else: not on the DataLoader worker that loads it, the number of workers or processes, nor on what was drawn before,
and a resumed run replays exactly the crops of an uninterrupted one. The flip's draw is taken for every sample whatever
the flip probability, so that changing it changes which samples are flipped and nothing else.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import torch
from PIL import Image

from ..errors import InvalidConfigError, InvalidInputError
from .images import decode_image
from .schema import IMAGE_COLUMN, PIXEL_VALUES

TRAIN_CROP_SCALE: tuple[float, float] = (0.2, 1.0)
MIN_IMAGE_SIZE = 16  # pixels: a typo such as image_size 3 is refused before any model loads
TRAIN_CROP_RATIO: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
TRAIN_HFLIP_PROBABILITY = 0.5
EVAL_RESIZE_RATIO = 256 / 224  # "Resize(256), CenterCrop(224)", kept proportional at other sizes
_RANDOM_CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 times, then falls back to a centre crop
_MIX = 1_000_003  # odd constant that spreads (seed, epoch, position) over the 63-bit seed space
EPOCH_COLUMN: Final = "epoch"  # batch columns the training transform seeds each row's crop and flip from
POSITION_COLUMN: Final = "position"


def processor_statistics(image_processor: Any) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """``(image_size, mean, std)`` of a transformers image processor (ViT, DeiT, BiT/DINOv2, CLIP).

    The size is the crop size where the processor has one (DINOv2, CLIP), else its square ``size``.
    """
    mean, std = getattr(image_processor, "image_mean", None), getattr(image_processor, "image_std", None)
    if mean is None or std is None:
        raise InvalidConfigError(
            f"{type(image_processor).__name__} has no image_mean/image_std; pass mean= and std= explicitly"
        )
    size_field = getattr(image_processor, "crop_size", None) or getattr(image_processor, "size", None)
    size = _square_size(size_field)
    if size is None:
        raise InvalidConfigError(f"cannot read an image size from {type(image_processor).__name__}; pass image_size=")
    return size, tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _square_size(size_field: Any) -> int | None:
    if isinstance(size_field, int):
        return size_field
    if isinstance(size_field, dict) or hasattr(size_field, "get"):
        for key in ("height", "shortest_edge"):
            if size_field.get(key):
                return int(size_field[key])
    return None


def _resolve(
    image_size: int | None, mean: Sequence[float] | None, std: Sequence[float] | None, image_processor: Any
) -> tuple[int, torch.Tensor, torch.Tensor]:
    if image_processor is not None:
        proc_size, proc_mean, proc_std = processor_statistics(image_processor)
        image_size = image_size or proc_size
        mean = proc_mean if mean is None else mean
        std = proc_std if std is None else std
    if image_size is None or mean is None or std is None:
        raise InvalidConfigError("pass image_size, mean and std, or a transformers image_processor that provides them")
    if int(image_size) <= 0:
        raise InvalidConfigError(f"image_size must be a positive number of pixels, got {image_size}")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise InvalidConfigError(f"mean and std need 3 values (RGB) with std > 0, got mean={mean}, std={std}")
    as_column = lambda values: torch.tensor([float(v) for v in values], dtype=torch.float32).view(3, 1, 1)  # noqa: E731
    return int(image_size), as_column(mean), as_column(std)


def _to_rgb(image: Any) -> Image.Image:
    """A row's image in RGB by the one rule of :func:`.images.to_rgb` (CUB and Cars hold greyscale and CMYK files,
    users' folders 16-bit and transparent ones); an undecoded ``{"path", "bytes"}`` value is decoded first, and an
    unreadable one is named (:func:`.images.decode_image`)."""
    if not isinstance(image, Image.Image | dict):
        raise InvalidInputError(f"expected a PIL image in column {IMAGE_COLUMN!r}, got {type(image).__name__}")
    return decode_image(image)


def _normalise(image: Image.Image, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    return pixels.sub_(mean).div_(std)


class _BatchTransform(ABC):
    """Shared batch handling: decode each row's image to ``pixel_values`` and pass the other columns through."""

    def __init__(self, image_size: int, mean: torch.Tensor, std: torch.Tensor, image_column: str) -> None:
        self.image_size = image_size
        self.mean = mean
        self.std = std
        self.image_column = image_column

    @abstractmethod
    def _transform_images(self, images: list[Image.Image], batch: dict[str, list[Any]]) -> list[torch.Tensor]:
        """The batch's RGB images to normalised (C, H, W) tensors."""

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        if self.image_column not in batch:
            raise InvalidInputError(f"batch has no {self.image_column!r} column (columns: {sorted(batch)})")
        out = {name: values for name, values in batch.items() if name != self.image_column}
        images = [_to_rgb(image) for image in batch[self.image_column]]
        out[PIXEL_VALUES] = torch.stack(self._transform_images(images, batch))
        return out


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the augmentation of the sample at ``position`` of ``epoch``'s order in a run seeded by ``seed``."""
    return ((seed * _MIX + epoch) * _MIX + position) % (2**63)


class TrainTransform(_BatchTransform):
    """RandomResizedCrop(size, ``scale``, bicubic) + horizontal flip (``hflip_probability``) + normalise, seeded per
    sample (the defaults are the published 0.2-1.0 and 0.5).

    The batch needs ``epoch`` and ``position`` columns besides the image: each row's crop and flip come from
    :meth:`generator` ``(epoch, position)`` (see the module docstring).
    """

    def __init__(
        self,
        image_size: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        *,
        scale: tuple[float, float] = TRAIN_CROP_SCALE,
        ratio: tuple[float, float] = TRAIN_CROP_RATIO,
        hflip_probability: float = TRAIN_HFLIP_PROBABILITY,
        seed: int = 0,
        image_column: str = IMAGE_COLUMN,
    ) -> None:
        super().__init__(image_size, mean, std, image_column)
        if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
            raise InvalidConfigError(
                f"need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]: {scale}, {ratio}"
            )
        if not 0.0 <= hflip_probability <= 1.0:
            raise InvalidConfigError(f"hflip_probability must lie in [0, 1], got {hflip_probability!r}")
        self.scale = scale
        self.ratio = ratio
        self.hflip_probability = float(hflip_probability)
        self.seed = int(seed)

    def generator(self, epoch: int, position: int) -> torch.Generator:
        """A fresh generator for the sample at ``position`` of ``epoch``'s order: seeded by :func:`sample_seed`."""
        return torch.Generator().manual_seed(sample_seed(self.seed, int(epoch), int(position)))

    def _transform_images(self, images: list[Image.Image], batch: dict[str, list[Any]]) -> list[torch.Tensor]:
        missing = [name for name in (EPOCH_COLUMN, POSITION_COLUMN) if name not in batch]
        if missing:
            raise InvalidInputError(
                f"the training transform seeds each row's crop and flip by (seed, epoch, position); the batch lacks "
                f"{missing} (columns: {sorted(batch)}). make_train_loader supplies them."
            )
        places = zip(batch[EPOCH_COLUMN], batch[POSITION_COLUMN], strict=True)
        return [
            self.transform_image(image, self.generator(*place)) for image, place in zip(images, places, strict=True)
        ]

    def crop_box(self, width: int, height: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """``(left, top, crop_width, crop_height)`` drawn as torchvision's ``RandomResizedCrop.get_params``."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(_RANDOM_CROP_ATTEMPTS):
            target_area = area * _uniform(*self.scale, generator)
            aspect = math.exp(_uniform(*log_ratio, generator))
            crop_w = int(round(math.sqrt(target_area * aspect)))
            crop_h = int(round(math.sqrt(target_area / aspect)))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator).item())
                left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator).item())
                return left, top, crop_w, crop_h
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            crop_w, crop_h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            crop_w, crop_h = int(round(height * self.ratio[1])), height
        else:
            crop_w, crop_h = width, height
        return (width - crop_w) // 2, (height - crop_h) // 2, crop_w, crop_h

    def transform_image(self, image: Image.Image, generator: torch.Generator) -> torch.Tensor:
        """One RGB image to a normalised (C, H, W) tensor, its crop and flip drawn from ``generator``."""
        left, top, crop_w, crop_h = self.crop_box(*image.size, generator)
        size = (self.image_size, self.image_size)
        image = image.resize(size, Image.Resampling.BICUBIC, box=(left, top, left + crop_w, top + crop_h))
        # Drawn for every sample, even at probability 0 or 1: the stream stays that of the published recipe.
        if torch.rand(1, generator=generator).item() < self.hflip_probability:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return _normalise(image, self.mean, self.std)


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * torch.rand(1, generator=generator).item()


class EvalTransform(_BatchTransform):
    """Resize(shorter side ``size * 256 / 224``, bicubic) + CenterCrop(size) + normalise (deterministic)."""

    @property
    def resize_size(self) -> int:
        """Shorter side after resizing: 256 for 224, proportionally for other sizes."""
        return int(math.floor(self.image_size * EVAL_RESIZE_RATIO + 1e-9))

    def _transform_images(self, images: list[Image.Image], batch: dict[str, list[Any]]) -> list[torch.Tensor]:
        return [self.transform_image(image) for image in images]

    def transform_image(self, image: Image.Image) -> torch.Tensor:
        """One RGB image to a normalised (C, H, W) tensor."""
        width, height = image.size
        short, long = min(width, height), max(width, height)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)  # torchvision's rounding
        new_size = (new_short, new_long) if width <= height else (new_long, new_short)
        image = image.resize(new_size, Image.Resampling.BICUBIC)
        left = int(round((new_size[0] - self.image_size) / 2.0))
        top = int(round((new_size[1] - self.image_size) / 2.0))
        image = image.crop((left, top, left + self.image_size, top + self.image_size))
        return _normalise(image, self.mean, self.std)


def make_train_transform(
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    *,
    image_processor: Any = None,
    scale: tuple[float, float] = TRAIN_CROP_SCALE,
    hflip_probability: float = TRAIN_HFLIP_PROBABILITY,
    seed: int = 0,
    image_column: str = IMAGE_COLUMN,
) -> TrainTransform:
    """The training transform of the published recipe, for :func:`peft_puma.data.make_train_loader`.

    Give ``image_size``, ``mean`` and ``std``, or a transformers ``image_processor`` (its crop size and statistics are
    used; explicit arguments win). ``scale`` is the crop's area range (fractions of the image) and
    ``hflip_probability`` the chance of a horizontal flip; the defaults are the published recipe. ``seed`` is the run
    seed each sample's crop/flip seed derives from (with the epoch and the sample's position, :func:`sample_seed`).
    """
    size, mean_t, std_t = _resolve(image_size, mean, std, image_processor)
    return TrainTransform(
        size, mean_t, std_t, scale=scale, hflip_probability=hflip_probability, seed=seed, image_column=image_column
    )


def make_eval_transform(
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    *,
    image_processor: Any = None,
    image_column: str = IMAGE_COLUMN,
) -> EvalTransform:
    """The deterministic evaluation transform of the published recipe, for ``Dataset.with_transform``."""
    size, mean_t, std_t = _resolve(image_size, mean, std, image_processor)
    return EvalTransform(size, mean_t, std_t, image_column)
