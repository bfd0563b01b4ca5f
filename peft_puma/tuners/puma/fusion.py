"""PUMA's fused eval path: the trained model's embeddings at the cost of its FLOPs (docs/fusion.md).

At evaluation every gate is 1 (docs/spec.md section 2, arXiv 2309.08944), so a block of the adapted model computes

    h  = x + Attn(LN1(x)) + s * relu(LN1(x) @ D1) @ U1
    x' = h + MLP(LN2(h))  + s * relu(LN2(h) @ D2) @ U2

Each adapter reads exactly what a frozen linear layer of its branch reads (the LayerNorm output) and adds exactly
where the branch's output projection adds. With ``Attn(z) = softmax(q k^T * scale) v @ W_o + b_o``, ``[q | k | v] = z
@ [W_q | W_k | W_v] + [b_q | b_k | b_v]`` (per head) and ``MLP(z) = act(z @ W_1 + b_1) @ W_2 + b_2``, the same block is

    [q | k | v | a1] = LN1(x) @ [W_q | W_k | W_v | D1] + [b_q | b_k | b_v | 0]
    h  = x + softmax(q k^T * scale) v @ W_o + b_o  + relu(a1) @ (s U1)
    [f | a2]         = LN2(h) @ [W_1 | D2] + [b_1 | 0]
    x' = h + act(f) @ W_2 + b_2                    + relu(a2) @ (s U2)

The down projections become extra output columns of the frozen input projections: one product where the unfused model
runs four (q, k, v and D1), one where it runs two (fc1 and D2). Each up projection is accumulated in place (``addmm_``)
onto the output projection's result, which is the product ``[context | relu(a1)] @ [W_o ; s U1]`` split along its inner
dimension, without materialising the concatenated input (measured on a CPU: as fast for attention, faster for the MLP,
where the concatenation would copy the ``4d``-wide activation; docs/fusion.md). Where a LayerScale vector ``lambda``
multiplies a branch's output before the adapter adds to it (DINOv2: the adapter joins after it, see families.py),
``lambda`` is folded into that branch's output projection, ``W_o * lambda`` and ``b_o * lambda``, and the LayerScale
module goes. Nothing is approximated: the fused model computes the same function, up to the rounding of sums taken in
another order.

Which linears a branch has is family knowledge and lives in families.py (:class:`FusableBranch`); a branch without
that layout (DINOv2's SwiGLU MLP, a projection that is not a plain ``nn.Linear``) keeps its unfused adapter, which
computes the same values.
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
import torch.nn.functional as F
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTuner
from torch import nn

from ...errors import FusedModelError, InvalidConfigError
from .config import PUMAConfig
from .families import AdapterSite, FusableBranch, PUMASites, resolve_sites
from .layer import PUMALayer, StochasticAdapter

_TRAINING_REFUSED = (
    "A fused PUMA model computes the eval-mode model only: its adapters are folded into the frozen weights with every "
    "stochastic gate at 1, so it cannot be trained. Train the PeftModel it was fused from, then fuse again."
)
_SAVING_REFUSED = (
    "A fused PUMA model is not an adapter: its weights are the whole backbone with the adapters folded in. Save the "
    "PeftModel it was fused from (model.save_pretrained(folder)), a file of a few MB, and fuse after loading it."
)


class _FusedBranch(nn.Module):
    """What the fused attention and MLP share: the scaled up projection ``s U`` and the refusal to train."""

    def __init__(self, up: torch.Tensor) -> None:
        super().__init__()
        self.up = nn.Parameter(up, requires_grad=False)  # s * U, shape (r, d)
        self.bottleneck_width = up.shape[0]

    def train(self, mode: bool = True) -> _FusedBranch:
        if mode:
            raise FusedModelError(_TRAINING_REFUSED)
        return super().train(False)

    def requires_grad_(self, requires_grad: bool = True) -> _FusedBranch:
        if requires_grad:
            raise FusedModelError(_TRAINING_REFUSED)
        return super().requires_grad_(False)

    def add_up_projection(self, output: torch.Tensor, bottleneck: torch.Tensor) -> torch.Tensor:
        """``output + relu(bottleneck) @ (s U)``, accumulated into ``output`` (a fresh product of the branch)."""
        flat = output.view(-1, output.shape[-1])
        flat.addmm_(torch.relu(bottleneck).reshape(-1, self.bottleneck_width), self.up.to(output.dtype))
        return output


class FusedAttention(_FusedBranch):
    """Self-attention with the attention adapter folded in; returns ``(output, None)`` like the modules it replaces.

    ``input_projection`` holds ``[W_q | W_k | W_v | D1]``, ``output_projection`` ``W_o`` (times LayerScale where the
    family has one), ``up`` ``s U1``. Attention runs in PyTorch's ``scaled_dot_product_attention``, transformers'
    default implementation for these models; it returns no attention weights.
    """

    def __init__(
        self,
        input_projection: nn.Linear,
        output_projection: nn.Linear,
        up: torch.Tensor,
        num_heads: int,
        scaling: float,
    ) -> None:
        super().__init__(up)
        self.input_projection = input_projection
        self.output_projection = output_projection
        self.num_heads = num_heads
        self.scaling = scaling
        inner = output_projection.in_features
        self.split_sizes = (inner, inner, inner, self.bottleneck_width)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> tuple[torch.Tensor, None]:
        *leading, _ = hidden_states.shape
        query, key, value, bottleneck = self.input_projection(hidden_states).split(self.split_sizes, dim=-1)
        heads = (*leading, self.num_heads, -1)
        context = F.scaled_dot_product_attention(
            query.view(heads).transpose(1, 2),
            key.view(heads).transpose(1, 2),
            value.view(heads).transpose(1, 2),
            attn_mask=attention_mask,
            scale=self.scaling,
        )
        output = self.output_projection(context.transpose(1, 2).reshape(*leading, -1))
        return self.add_up_projection(output, bottleneck), None


class FusedMLP(_FusedBranch):
    """The MLP with the MLP adapter folded in: ``input_projection`` holds ``[W_1 | D2]``, ``output_projection``
    ``W_2`` (times LayerScale where the family has one), ``up`` ``s U2``."""

    def __init__(
        self, input_projection: nn.Linear, activation: nn.Module, output_projection: nn.Linear, up: torch.Tensor
    ) -> None:
        super().__init__(up)
        self.input_projection = input_projection
        self.activation = activation
        self.output_projection = output_projection
        self.split_sizes = (output_projection.in_features, self.bottleneck_width)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden, bottleneck = self.input_projection(hidden_states).split(self.split_sizes, dim=-1)
        output = self.output_projection(self.activation(hidden))
        return self.add_up_projection(output, bottleneck)


class FusedPUMAModel(nn.Module):
    """The eval-mode PUMA model with its adapters folded into the frozen linears (docs/fusion.md).

    Built by :func:`fuse_for_inference`. ``model(pixel_values=x)`` returns the same :class:`PUMAOutput` as the PeftModel
    it was fused from in eval mode (``embeddings``, the backbone's output), for that model's active adapter, named by
    ``active_adapter``; ``peft_config`` maps that name to its config, as on a ``PeftModel``. Every tensor is frozen and
    training mode is refused (:class:`~peft_puma.errors.FusedModelError`), as are ``requires_grad_(True)`` and a
    forward with gradients on once any tensor was made trainable by hand; ``eval()``, ``train(False)`` and
    ``requires_grad_(False)`` are accepted. ``unfused_sites`` names the adapters whose branch had no fusable layout and
    that run as plain (exact) adapters.
    """

    def __init__(self, model: nn.Module, adapter_name: str, config: PUMAConfig, unfused_sites: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.active_adapter = adapter_name
        self.peft_config = {adapter_name: config}
        self.unfused_sites = unfused_sites
        self.requires_grad_(False)
        super().train(False)

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        if torch.is_grad_enabled() and any(parameter.requires_grad for parameter in self.parameters()):
            # A tensor made trainable by hand (``parameter.requires_grad = True``): an optimiser would update the
            # folded weights, which no longer are the adapter's; refused before any gradient exists.
            raise FusedModelError(_TRAINING_REFUSED)
        return self.model(pixel_values=pixel_values, **kwargs)

    def requires_grad_(self, requires_grad: bool = True) -> FusedPUMAModel:
        if requires_grad:
            raise FusedModelError(_TRAINING_REFUSED)
        return super().requires_grad_(False)

    # What transformers' pipelines read of a model (``pipeline("image-feature-extraction", model=fused)``), as on a
    # PeftModel, which forwards them to its backbone.
    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def train(self, mode: bool = True) -> FusedPUMAModel:
        if mode:
            raise FusedModelError(_TRAINING_REFUSED)
        return super().train(False)

    def save_pretrained(self, *args: Any, **kwargs: Any) -> None:
        raise FusedModelError(_SAVING_REFUSED)

    def push_to_hub(self, *args: Any, **kwargs: Any) -> None:
        raise FusedModelError(_SAVING_REFUSED)


def fuse_for_inference(model: PeftModel | BaseTuner) -> FusedPUMAModel:
    """An eval-only copy of a PUMA model whose adapters are folded into the frozen linears beside them (docs/fusion.md).

    ``model``: a PUMA ``PeftModel`` (or its ``PUMAModel`` tuner). Its active adapter is fused, as it would run in
    ``model.eval()``: every gate on, the trained (or fixed) scale folded in; prompts and head are kept as they are. The
    given model is not changed, in any mode (fusing reads its weights only): keep training it, or delete it to free its
    memory. Fuse again after training further or after ``set_adapter``.
    """
    tuner = _puma_tuner(model)
    adapter_name, config = _active_puma_adapter(tuner)
    backbone = copy.deepcopy(tuner.model)
    sites = resolve_sites(backbone)
    unfused = tuple(site.canonical_name for site in sites.adapters if not _fuse_site(backbone, sites, site))
    _drop_other_adapters(backbone, adapter_name)
    return FusedPUMAModel(backbone, adapter_name, config, unfused)


def _puma_tuner(model: Any) -> BaseTuner:
    tuner = model.base_model if isinstance(model, PeftModel) else model
    if not isinstance(tuner, BaseTuner) or not any(isinstance(c, PUMAConfig) for c in tuner.peft_config.values()):
        raise InvalidConfigError(
            f"fuse_for_inference takes a PUMA model (the PeftModel of get_peft_model or PeftModel.from_pretrained with "
            f"a PUMAConfig), got {type(model).__name__}."
        )
    return tuner


def _active_puma_adapter(tuner: BaseTuner) -> tuple[str, PUMAConfig]:
    active = list(tuner.active_adapters)
    if len(active) != 1 or not isinstance(tuner.peft_config.get(active[0]), PUMAConfig):
        raise InvalidConfigError(f"fuse_for_inference fuses one active PUMA adapter; active adapters are {active}.")
    return active[0], tuner.peft_config[active[0]]


def _fuse_site(backbone: nn.Module, sites: PUMASites, site: AdapterSite) -> bool:
    """Replace one branch of ``backbone`` by its fused form; False where an active adapter stays unfused."""
    wrapper = backbone.get_submodule(site.output)
    if not isinstance(wrapper, StochasticAdapter):
        return True  # no adapter in this branch (PUMAConfig.layers)
    if wrapper.active_puma_adapter() is None:  # the active adapter has none here, or adapters are disabled
        wrapper.remove_hooks()
        backbone.set_submodule(site.output, wrapper.base_layer)
        return True
    layout = sites.family.attention_fusion if site.branch == "attention" else sites.family.mlp_fusion
    module_path = f"{site.block}.{layout.module}"
    branch = backbone.get_submodule(module_path)
    branch = branch.base_layer if branch is wrapper else branch
    # Where the adapter wraps a module after the branch's own (DINOv2's LayerScale), that module is folded in.
    folded = module_path != site.output
    layer_scale = _layer_scale(backbone.get_submodule(site.block), layout) if folded else None
    if not _has_layout(branch, layout) or (folded and layer_scale is None):
        return False
    fused = _fused_branch(branch, layout, wrapper, layer_scale, sites.num_attention_heads)
    wrapper.remove_hooks()
    backbone.set_submodule(module_path, fused)
    if folded:
        backbone.set_submodule(site.output, nn.Identity())
    return True


def _layer_scale(block: nn.Module, layout: FusableBranch) -> torch.Tensor | None:
    """The LayerScale vector the family names for this branch (read through the adapter wrapping its module)."""
    return operator.attrgetter(layout.layer_scale)(block) if layout.layer_scale else None


def _has_layout(branch: nn.Module, layout: FusableBranch) -> bool:
    """Whether ``branch`` has the family's plain linears (a SwiGLU MLP or a LoRA-wrapped projection does not)."""
    linears = [getattr(branch, name, None) for name in (*layout.inputs, layout.output)]
    if not all(type(linear) is nn.Linear for linear in linears):
        return False
    if layout.scaling is not None and not hasattr(branch, layout.scaling):
        return False
    return layout.activation is None or isinstance(getattr(branch, layout.activation, None), nn.Module)


def _fused_branch(
    branch: nn.Module,
    layout: FusableBranch,
    adapter: StochasticAdapter,
    layer_scale: torch.Tensor | None,
    num_heads: int,
) -> _FusedBranch:
    adapter_name = adapter.active_puma_adapter()
    inputs = [getattr(branch, name) for name in layout.inputs]
    output = getattr(branch, layout.output)
    down, up = adapter.puma_down[adapter_name], adapter.scaled_up(adapter_name)
    reference = output.weight  # the fused tensors take the frozen weights' dtype and device
    with torch.no_grad():
        input_projection = _linear(
            torch.cat([*(linear.weight for linear in inputs), down.T.to(reference)]),
            torch.cat([*(_bias(linear) for linear in inputs), reference.new_zeros(down.shape[1])]),
        )
        weight, bias = output.weight, _bias(output)
        if layer_scale is not None:
            weight, bias = weight * layer_scale[:, None], bias * layer_scale
        output_projection = _linear(weight, bias)
        scaled_up = up.detach().to(reference)
    if layout.activation is not None:
        return FusedMLP(input_projection, getattr(branch, layout.activation), output_projection, scaled_up)
    return FusedAttention(input_projection, output_projection, scaled_up, num_heads, getattr(branch, layout.scaling))


def _bias(linear: nn.Linear) -> torch.Tensor:
    return linear.bias if linear.bias is not None else linear.weight.new_zeros(linear.out_features)


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """A frozen ``nn.Linear`` holding ``weight`` (out, in) and ``bias``, without initialising weights first."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], device="meta")
    linear.weight = nn.Parameter(weight.detach(), requires_grad=False)
    linear.bias = nn.Parameter(bias.detach(), requires_grad=False)
    return linear


def _drop_other_adapters(backbone: nn.Module, adapter_name: str) -> None:
    """The fused model carries the fused adapter only: other adapters' prompts and heads are deleted from its copy."""
    for module in backbone.modules():
        if isinstance(module, PUMALayer):
            owned = set().union(*(getattr(module, attr).keys() for attr in module.adapter_layer_names))
            for name in owned - {adapter_name}:
                module.delete_adapter(name)
