"""PUMA as a PEFT method: ``PUMAConfig`` + ``PUMAModel``, registered with PEFT on import."""

from .config import PUMA_PRESETS, PUMAConfig
from .families import SUPPORTED_MODELS
from .fusion import FusedAttention, FusedMLP, FusedPUMAModel, fuse_for_inference
from .head import EmbeddingHead
from .layer import PUMALayer, StochasticAdapter
from .model import PUMAModel
from .output import PUMAOutput
from .prompt_pool import ConditionalPromptPool
from .registration import PEFT_TYPE, SUPPORTED_PEFT_VERSIONS, register
from .transformers_integration import TransformersIntegrationError

register()

__all__ = [
    "PEFT_TYPE",
    "PUMA_PRESETS",
    "SUPPORTED_MODELS",
    "SUPPORTED_PEFT_VERSIONS",
    "ConditionalPromptPool",
    "EmbeddingHead",
    "FusedAttention",
    "FusedMLP",
    "FusedPUMAModel",
    "PUMAConfig",
    "PUMALayer",
    "PUMAModel",
    "PUMAOutput",
    "StochasticAdapter",
    "TransformersIntegrationError",
    "fuse_for_inference",
]
