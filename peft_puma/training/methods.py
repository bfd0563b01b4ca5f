"""Every method the training script can run, by name: PUMA, its ablations and the paper's baselines.

One table, :data:`METHODS`, so that the comparisons of the paper (Tables 2 and 3) are one command-line switch:

- the PUMA presets (``puma``, ``stochastic_adapter``, ``static_adapter``, ``conditional_prompt``, ``single_prompt``,
  ``single_prompt_static_adapter``, ``linear``; see :data:`peft_puma.PUMA_PRESETS`);
- ``lora``: PEFT's own LoRA on the backbone's linears plus PUMA's embedding head, at the rank whose size is closest to
  PUMA's adapter budget (about 2.4M on ViT-S/16, as in the paper's Table 2);
- ``full_finetune``: PUMA's head with the whole backbone trainable (base lr, ``lr_multipliers.backbone``).

Every built model is a PUMA ``PeftModel`` (``model(pixel_values=x).embeddings``); LoRA tensors and a fine-tuned
backbone are saved beside the PUMA adapter (``lora/``, ``backbone/``) and restored by :func:`load_trained`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

from peft import LoraConfig, PeftModel, get_peft_model, inject_adapter_in_model
from torch import nn

from ..errors import InvalidConfigError
from ..runs.saving import LORA_ADAPTER, puma_over_lora
from ..tuners.puma.config import PUMA_PRESETS, PUMAConfig, preset_conflicts
from .arguments import BASELINES, TrainingConfig, preset_of


@dataclass(frozen=True)
class MethodOptions:
    """What a builder needs from the run's :class:`~peft_puma.training.TrainingConfig`: the PUMA config of the method
    (its preset with the run's ``puma`` entries, :meth:`~peft_puma.training.TrainingConfig.puma_config`; for a
    baseline, the ``linear`` preset: PUMA's head alone) and LoRA's options."""

    puma: PUMAConfig
    lora_r: int | None = None
    lora_alpha: float | None = None
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | str = "all-linear"

    @classmethod
    def from_config(cls, config: TrainingConfig) -> MethodOptions:
        return cls(
            puma=config.puma_config(),
            lora_r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            lora_target_modules=config.lora_target_modules,
        )


@dataclass(frozen=True)
class Method:
    """A named method: what it is (for the start-up summary), the PUMA preset its config must match, and how to
    build it on a frozen backbone."""

    description: str
    preset: str
    build: Callable[[nn.Module, MethodOptions], PeftModel]


def _build_preset(backbone: nn.Module, options: MethodOptions) -> PeftModel:
    return get_peft_model(backbone, options.puma)


def _build_lora(backbone: nn.Module, options: MethodOptions) -> PeftModel:
    rank = options.lora_r or lora_rank_for_budget(backbone, options)
    lora = LoraConfig(
        r=rank,
        lora_alpha=options.lora_alpha if options.lora_alpha is not None else rank,
        lora_dropout=options.lora_dropout,
        target_modules=options.lora_target_modules,
    )
    inject_adapter_in_model(lora, backbone, adapter_name=LORA_ADAPTER)
    with puma_over_lora():
        model = get_peft_model(backbone, options.puma)
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            parameter.requires_grad_(True)  # PUMA freezes everything that is not its own
    return model


def _build_full_finetune(backbone: nn.Module, options: MethodOptions) -> PeftModel:
    model = get_peft_model(backbone, options.puma)
    model.get_base_model().requires_grad_(True)
    return model


METHODS: dict[str, Method] = {
    **{
        name: Method(
            f"PUMA preset {name!r} ({', '.join(f'{k}={v}' for k, v in fields.items()) or 'published'})",
            name,
            _build_preset,
        )
        for name, fields in PUMA_PRESETS.items()
    },
    "lora": Method(BASELINES["lora"], preset_of("lora"), _build_lora),
    "full_finetune": Method(BASELINES["full_finetune"], preset_of("full_finetune"), _build_full_finetune),
}


def build_model(
    method: str, backbone: nn.Module, options: MethodOptions, *, activation_checkpointing: bool = False
) -> PeftModel:
    """The trainable model of ``method`` on ``backbone`` (modified in place), its blocks recomputed in backward when
    ``activation_checkpointing`` is set (:func:`enable_activation_checkpointing`)."""
    if method not in METHODS:
        raise InvalidConfigError(f"Unknown method {method!r}; accepted: {', '.join(METHODS)}.")
    conflicts = preset_conflicts(METHODS[method].preset, options.puma.to_dict())
    if conflicts:
        raise InvalidConfigError(
            f"The PUMA config given for method {method!r} is not its preset's: {conflicts} (field: (preset, given)); "
            "build it with TrainingConfig.puma_config() or PUMAConfig.from_preset."
        )
    model = METHODS[method].build(backbone, options)
    if activation_checkpointing:
        enable_activation_checkpointing(model)
    return model


def enable_activation_checkpointing(model: PeftModel) -> PeftModel:
    """Recompute every transformer block of the backbone in backward instead of keeping its activations.

    Every method here backpropagates through the whole backbone (prompts enter at the input, adapters sit in every
    block), so the activations kept for backward dominate training memory; checkpointing keeps only each block's
    input. The non-reentrant variant is used: it gives gradients to adapters and prompts although the backbone's own
    inputs and weights need none, and it replays the random state, so PUMA's Bernoulli gates draw the same values
    again when a block is recomputed (same gradients as without checkpointing).
    """
    backbone = model.get_base_model()
    if not getattr(backbone, "supports_gradient_checkpointing", False):
        raise InvalidConfigError(
            f"activation_checkpointing: {type(backbone).__name__} does not support activation checkpointing in "
            "transformers; set activation_checkpointing: false for this backbone."
        )
    _checkpoint_every_block(backbone)
    return model


def compile_for_training(model: PeftModel, backend: str = "inductor", mode: str | None = None) -> PeftModel:
    """Compile ``model`` in place (``nn.Module.compile``: parameter names, saving and loading are unchanged).

    Under compilation PUMA's adapters take the masked form (every sample computed, the dropped ones multiplied by zero):
    gathering the kept samples gives tensors whose size depends on the draw, which would split the graph. Inductor's
    ``fallback_random`` makes the compiled graph draw its gates with eager mode's random functions, so a seed gives the
    same gates compiled or not (and ``--resume`` the same draws).
    """
    import torch._inductor.config

    torch._inductor.config.fallback_random = True
    model.compile(backend=backend, mode=None if mode == "default" else mode)
    return model


def _checkpoint_every_block(backbone: nn.Module) -> None:
    """Turn on transformers' non-reentrant checkpointing under the name the installed version has.

    transformers 5.23 renamed ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable`` (the old name
    warns until v6); the versions before it, which our bounds allow, have only the old name.
    """
    if hasattr(backbone, "activation_checkpointing_enable"):
        backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def lora_rank_for_budget(backbone: nn.Module, options: MethodOptions) -> int:
    """The LoRA rank whose parameter count is closest to PUMA's adapters + prompt pool on this backbone.

    Both counts are measured, not derived from formulas: PUMA's by building it, LoRA's per rank by injecting rank 1,
    each on a throw-away copy of the backbone.
    """
    published = PUMAConfig.from_any(options.puma, use_adapters=True, use_prompts=True)  # the budget LoRA matches
    puma = get_peft_model(copy.deepcopy(backbone), published)
    groups = puma.base_model.parameter_groups()
    budget = sum(p.numel() for part in ("adapters", "prompts") for p in groups[part])
    probe = inject_adapter_in_model(
        LoraConfig(r=1, target_modules=options.lora_target_modules), copy.deepcopy(backbone), adapter_name="probe"
    )
    per_rank = sum(p.numel() for name, p in probe.named_parameters() if "lora_" in name)
    return max(1, round(budget / per_rank))


def parameter_groups(model: PeftModel) -> dict[str, list[nn.Parameter]]:
    """Trainable tensors by learning-rate group: PUMA's ``adapters``, ``prompts``, ``head``, then ``lora`` and
    ``backbone`` (everything else that trains). Empty groups are dropped."""
    groups: dict[str, list[nn.Parameter]] = dict(model.base_model.parameter_groups())
    seen = {id(p) for params in groups.values() for p in params}
    groups["lora"], groups["backbone"] = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and id(parameter) not in seen:
            groups["lora" if "lora_" in name else "backbone"].append(parameter)
    return {name: params for name, params in groups.items() if params}
