"""peft_puma: PUMA (Parameter-efficient Unified Metric leArning, arXiv 2309.08944) as a HuggingFace PEFT tuner.

``import peft_puma`` registers the ``PUMA`` method with PEFT, after which ``peft.get_peft_model(vit, PUMAConfig())`` and
``peft.PeftModel.from_pretrained(vit, path)`` work as for any built-in PEFT method. Heavy optional parts (losses,
evaluation, data, training) live in sub-packages and are imported only when used.
"""

from __future__ import annotations

from .data.image_processor import PUMAImageProcessor, register_image_processor
from .errors import (
    DatasetLayoutError,
    FusedModelError,
    IncompatibleCheckpointError,
    InvalidConfigError,
    InvalidInputError,
    PUMAError,
    UnsupportedModelError,
)
from .tuners.puma import (
    PUMA_PRESETS,
    SUPPORTED_MODELS,
    SUPPORTED_PEFT_VERSIONS,
    FusedPUMAModel,
    PUMAConfig,
    PUMAModel,
    PUMAOutput,
    fuse_for_inference,
)

__version__ = "0.1.0"

register_image_processor()  # AutoImageProcessor.from_pretrained(<adapter folder>) finds PUMA's eval transform

__all__ = [
    "PUMA_PRESETS",
    "SUPPORTED_MODELS",
    "SUPPORTED_PEFT_VERSIONS",
    "DatasetLayoutError",
    "FusedModelError",
    "FusedPUMAModel",
    "IncompatibleCheckpointError",
    "InvalidConfigError",
    "InvalidInputError",
    "PUMAConfig",
    "PUMAError",
    "PUMAModel",
    "PUMAImageProcessor",
    "PUMAOutput",
    "UnsupportedModelError",
    "fuse_for_inference",
]
