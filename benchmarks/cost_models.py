"""What the cost benchmark runs: backbone shapes, every method as the trainer builds it, where it runs, and the
trainer's own training step.

Nothing here re-assembles training: a step is :class:`peft_puma.training.step.TrainingStep`, built by
``build_training_step`` with the published recipe (the defaults of ``TrainingConfig``, docs/spec.md section 6) and
an ``accelerate.Accelerator`` for the benchmark's device and precision, so fp16 gets the trainer's gradient scaling.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from method_names import BENCHMARK_METHODS  # a sibling module: a script's own folder is on its path
from torch import nn

from peft_puma import fuse_for_inference
from peft_puma.losses import make_loss
from peft_puma.runs.saving import save_trained
from peft_puma.training.arguments import TrainingConfig
from peft_puma.training.methods import MethodOptions, build_model
from peft_puma.training.step import build_training_step

METHODS = BENCHMARK_METHODS
# The forms a trained model can run inference in, each exact: PUMA as trained and fused for inference
# (peft_puma.fuse_for_inference, docs/fusion.md), LoRA with its update beside the frozen linears and merged into them
# (PEFT's merge, then the LoRA wrappers unloaded). Form -> the benchmark method it is built from.
INFERENCE_FORMS: dict[str, str] = {
    "frozen": "frozen",
    "puma": "puma",
    "puma_fused": "puma",
    "lora": "lora",
    "lora_merged": "lora",
}
# A rewritten form -> the form it must give the same embeddings as.
INFERENCE_FORM_SOURCES: dict[str, str] = {"puma_fused": "puma", "lora_merged": "lora"}
# PUMA with one of its two parts removed: their extra cost over the frozen model splits PUMA's overhead by part.
COMPONENTS: dict[str, str] = {"prompts_only": "conditional_prompt", "adapters_only": "stochastic_adapter"}
# PUMA and full fine-tuning trained with activation checkpointing (the trainer's `activation_checkpointing: true`):
# every method backpropagates through the whole backbone, so kept activations dominate training memory; these rows
# show what recomputing them costs in time and saves in memory.
CHECKPOINTED: dict[str, str] = {"puma_checkpointed": "puma", "full_ft_checkpointed": "full_ft"}
PAPER_TRAIN_CLASSES = 15_952  # proxies of CurricularFace on the full 8-dataset union (docs/data.md)
MB = 1e6
# Benchmark precision -> accelerate's mixed_precision (what the trainer's `mixed_precision` key takes).
PRECISIONS: dict[str, str] = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
_AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# The step schedule only decides when the learning rate halves (every lr_step_epochs epochs); no benchmark runs
# that many steps, so any epoch length gives the same work per step.
STEPS_PER_EPOCH = 1_000


@dataclass(frozen=True)
class Runtime:
    """Where the models run and in which precision, as the trainer's accelerator sets it (fp32 on a CPU; bf16, or
    fp16 with gradient scaling, on a GPU; the loss always in fp32)."""

    device: str = "cpu"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "fp16" and not self.is_cuda:
            raise ValueError("fp16 runs on a GPU only (accelerate has no fp16 gradient scaling on a CPU); use bf16")

    @property
    def is_cuda(self) -> bool:
        return torch.device(self.device).type == "cuda"

    def accelerator(self) -> Any:
        """A new ``Accelerator`` for this device and precision, as the trainer makes it. Accelerate keeps one
        configuration per process, so every runtime of a process must ask for the same precision."""
        from accelerate import Accelerator

        return Accelerator(cpu=not self.is_cuda, mixed_precision=PRECISIONS[self.precision])

    def autocast(self) -> Any:
        """Inference's autocast: the precision the accelerator's autocast gives training."""
        dtype = _AUTOCAST_DTYPES[self.precision]
        return torch.autocast(torch.device(self.device).type, dtype=dtype, enabled=dtype is not None)

    def synchronize(self) -> None:
        """Wait for queued GPU work, so that a timer measures it (nothing to wait for on a CPU)."""
        if self.is_cuda:
            torch.cuda.synchronize()


@dataclass(frozen=True)
class BackboneShape:
    """A ViT's shape; the weights are random (seeded), which does not change the cost of any operation."""

    hidden_size: int = 384
    num_layers: int = 12
    num_heads: int = 6
    intermediate_size: int = 1536
    patch_size: int = 16
    image_size: int = 224

    def vit(self, image_size: int | None = None, seed: int = 0) -> nn.Module:
        from transformers import ViTConfig, ViTModel

        config = ViTConfig(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            patch_size=self.patch_size,
            image_size=image_size or self.image_size,
            qkv_bias=True,
            layer_norm_eps=1e-6,
        )
        torch.manual_seed(seed)
        return ViTModel(config, add_pooling_layer=False).eval()

    def tokens(self, image_size: int) -> int:
        """Patch tokens plus CLS at ``image_size``."""
        return (image_size // self.patch_size) ** 2 + 1


SHAPES: dict[str, BackboneShape] = {
    "vit_s16": BackboneShape(),  # the paper's ViT-S/16 at 224 px (22M parameters)
    "tiny": BackboneShape(64, 2, 2, 128, 8, 32),  # CI smoke runs: seconds, same code paths
}


def recipe() -> Any:
    """The published recipe: ``TrainingConfig`` defaults (docs/spec.md section 6)."""

    return TrainingConfig()


def trainer_method(name: str) -> str | None:
    """The trainer method a benchmark row measures (None: the bare frozen backbone)."""
    return {**METHODS, **COMPONENTS}[CHECKPOINTED.get(name, name)]


def build_method(name: str, backbone: nn.Module, device: str = "cpu") -> nn.Module:
    """The model the trainer would train for benchmark row ``name`` (on ``backbone``, modified in place); a
    ``CHECKPOINTED`` name gives its method with activation checkpointing on."""

    method = trainer_method(name)
    if method is None:
        return backbone.requires_grad_(False).to(device)
    options = MethodOptions.from_config(recipe().for_method(method))
    return build_model(method, backbone, options, activation_checkpointing=name in CHECKPOINTED).to(device)


def inference_forms(backbone: nn.Module, device: str = "cpu", seed: int = 0) -> dict[str, nn.Module]:
    """Every ``INFERENCE_FORMS`` model, in eval mode, each trained form on its own copy of ``backbone``. The trained
    tensors get seeded random values first (PUMA's ``U`` and LoRA's ``B`` start at zero), so that a rewritten form
    equal to its source shows that it computes the same function, not only the frozen one; costs do not depend on
    values."""

    forms: dict[str, nn.Module] = {"frozen": build_method("frozen", copy.deepcopy(backbone), device)}
    for method in ("puma", "lora"):
        model = build_method(method, copy.deepcopy(backbone), device)
        _randomize_trained(model, seed)
        forms[method] = model.eval()
    forms["puma_fused"] = fuse_for_inference(forms["puma"])
    forms["lora_merged"] = merged_lora(copy.deepcopy(forms["lora"]))
    return {name: forms[name] for name in INFERENCE_FORMS}


def _randomize_trained(model: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                noise = torch.randn(parameter.shape, generator=generator) * 0.02
                parameter.copy_(noise.to(parameter))


def merged_lora(model: nn.Module) -> nn.Module:
    """The LoRA baseline with its update merged into the frozen linears and the LoRA wrappers replaced by those
    linears: what ``merge_and_unload`` gives (the baseline injects LoRA into the backbone, beside PUMA's head, so the
    wrappers are unloaded here)."""
    from peft.tuners.lora import LoraLayer

    backbone = model.get_base_model()
    for name, module in list(backbone.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            backbone.set_submodule(name, module.get_base_layer())
    return model.eval()


def training_step(model: nn.Module, num_classes: int, runtime: Runtime) -> Any:
    """The trainer's :class:`~peft_puma.training.step.TrainingStep` for ``model``: the recipe's loss (with
    ``num_classes`` proxies), parameter groups, AdamW, schedule and gradient clamp, prepared by a fresh accelerator
    (one per step, so that dropping the step frees its optimiser state), in training mode."""

    config = recipe()
    size = model.peft_config["default"].embedding_size
    loss = make_loss(config.loss, num_classes=num_classes, embedding_size=size, **config.loss_options)
    step = build_training_step(model, loss, config, runtime.accelerator(), STEPS_PER_EPOCH)
    step.objective.train()
    return step


def embed(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Retrieval embeddings: PUMA's head output, or for the bare backbone its L2-normalised final CLS (zero-shot)."""
    output = model(pixel_values=pixel_values)
    if hasattr(output, "embeddings"):
        return output.embeddings
    return F.normalize(output.last_hidden_state[:, 0], dim=-1)


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def adapter_megabytes(model: nn.Module) -> float:
    """Size of the weight files ``save_trained`` writes for this method (adapter, LoRA tensors or a whole backbone)."""

    if not hasattr(model, "peft_config"):
        return 0.0  # the frozen backbone: nothing to save
    with tempfile.TemporaryDirectory() as folder:
        save_trained(model, folder)
        return sum(
            os.path.getsize(os.path.join(root, name)) / MB
            for root, _, names in os.walk(folder)
            for name in names
            if name.endswith(".safetensors")
        )


def lora_rank(model: nn.Module) -> int:
    """The rank of the LoRA baseline's tensors (matched to PUMA's budget by the trainer's builder)."""
    return model.get_base_model().peft_config["lora"].r


def make_batch(
    batch_size: int, image_size: int, num_classes: int, seed: int, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
    return pixels.to(device), labels.to(device)
