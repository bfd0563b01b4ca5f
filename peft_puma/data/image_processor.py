"""PUMA's eval transform as a transformers image processor, saved beside every trained adapter.

Why: transformers' tools (``pipeline("image-feature-extraction")``, ``AutoImageProcessor``, a Hub widget) read an
image processor from the model's folder, and the backbone's own (ViT's plain resize to a square) is not the transform
the adapter was trained and scored with: resize the shorter side to ``size * 256 / 224`` (bicubic), centre-crop
``size``, normalise with the backbone's statistics (docs/data.md, arXiv 2309.08944 section 4.1). Fed through the
backbone's processor, the same image gives an embedding at cosine 0.9 of ``embed``'s. :class:`PUMAImageProcessor`
applies exactly :class:`~peft_puma.data.transforms.EvalTransform` (the same PIL operations, whatever transformers'
image backend), so ``pipeline`` and ``python -m peft_puma.embed`` give the same embeddings.

``import peft_puma`` registers the class with ``AutoImageProcessor`` (:func:`register_image_processor`), so
``AutoImageProcessor.from_pretrained(<run folder>)`` and ``pipeline(..., image_processor=<run folder>)`` find it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, PretrainedConfig
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from ..errors import InvalidInputError

PIXEL_VALUES = "pixel_values"  # the model's input name (also data.schema's; importing that loads datasets)


class PUMAImageProcessor(BaseImageProcessor):
    """Resize (shorter side ``size * 256 / 224``, bicubic), centre crop ``size``, normalise: PUMA's eval transform.

    ``size`` is the adapter's training resolution, ``image_mean``/``image_std`` the backbone's statistics. Build one
    from a backbone's processor with :meth:`for_backbone`; load a saved one with ``from_pretrained`` (after
    ``import peft_puma``, ``AutoImageProcessor.from_pretrained`` does too).
    """

    model_input_names = [PIXEL_VALUES]

    def __init__(
        self,
        size: int = 224,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.size = int(size)
        self.image_mean = [float(m) for m in image_mean]
        self.image_std = [float(s) for s in image_std]
        self._transform = None  # built on first use: ``import peft_puma`` registers this class without loading PIL code

    @property
    def transform(self) -> Any:
        """The :class:`~peft_puma.data.transforms.EvalTransform` this processor applies."""
        if self._transform is None:
            from .transforms import make_eval_transform

            self._transform = make_eval_transform(self.size, self.image_mean, self.image_std)
        return self._transform

    @classmethod
    def for_backbone(cls, backbone_processor: Any, image_size: int | None = None) -> PUMAImageProcessor:
        """The processor of an adapter trained at ``image_size`` (default: the backbone's) on a backbone whose own
        processor is ``backbone_processor`` (its mean and std are kept)."""
        from .transforms import processor_statistics

        size, mean, std = processor_statistics(backbone_processor)
        return cls(size=image_size or size, image_mean=mean, image_std=std)

    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        """``{"pixel_values": (B, 3, size, size)}`` float32 for a PIL image, an array, or a list of them."""
        if kwargs:
            raise InvalidInputError(
                f"PUMAImageProcessor takes no options ({sorted(kwargs)}): its resize, crop and statistics are the "
                "adapter's own, fixed when it was trained."
            )
        batch = images if isinstance(images, list | tuple) else [images]
        transform = self.transform
        pixels = transform({transform.image_column: [_as_pil(image) for image in batch]})[PIXEL_VALUES]
        if return_tensors in (None, "pt"):
            return BatchFeature({PIXEL_VALUES: pixels}, tensor_type=return_tensors)
        if return_tensors == "np":
            return BatchFeature({PIXEL_VALUES: pixels.numpy()})
        raise InvalidInputError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}.")

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("_transform", None)
        return output


def _as_pil(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
            array = array.transpose(1, 2, 0)  # channels first -> last
        if array.dtype != np.uint8:
            array = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        return Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array)
    raise InvalidInputError(f"expected a PIL image, a numpy array or a tensor, got {type(image).__name__}.")


class _ProcessorKey(PretrainedConfig):
    """The key transformers' ``AutoImageProcessor.register`` files an image processor under (it must be a config
    class); no model uses it. Lookup from a saved ``preprocessor_config.json`` goes by the class name."""

    model_type = "peft_puma_image_processor"


def register_image_processor() -> None:
    """Make ``AutoImageProcessor`` load :class:`PUMAImageProcessor` from a saved ``preprocessor_config.json``, with
    either of transformers' image backends (the class is plain PIL + torch). Idempotent."""
    AutoImageProcessor.register(
        _ProcessorKey,
        image_processor_classes={"pil": PUMAImageProcessor, "torchvision": PUMAImageProcessor},
        exist_ok=True,
    )
