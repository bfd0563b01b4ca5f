"""PUMA's tuner layers: the shared mixin and the stochastic adapter (arXiv 2309.08944).

Each PUMA layer wraps one module of the frozen backbone, keeps its trainable tensors per adapter name in
``ParameterDict``/``ModuleDict`` containers (the PEFT convention, so ``add_adapter``/``set_adapter``/``delete_adapter``
work unchanged), and knows its *site*: the backbone-independent name its tensors are saved under.
"""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from ...errors import PUMAError
from .kept_rows import add_on_kept_rows


class PUMALayer(BaseTunerLayer):
    """What the three PUMA layers share: the wrapped module, the single active adapter, attribute forwarding."""

    adapter_layer_names: tuple[str, ...] = ()
    other_param_names: tuple[str, ...] = ()

    def _init_puma_layer(self, base_layer: nn.Module, site: str) -> None:
        self.base_layer = base_layer
        self.puma_site = site
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []

    def active_puma_adapter(self) -> str | None:
        """The adapter this layer applies now, or None when adapters are disabled or this one has no part here."""
        if self.disable_adapters:
            return None
        owned = getattr(self, self.adapter_layer_names[0])
        active = [name for name in self.active_adapters if name in owned]
        return active[0] if active else None

    def _move_to_base_device(self, adapter_name: str) -> None:
        reference = next(self.base_layer.parameters(), None)
        if reference is None:
            return
        # Half-precision backbones keep fp32 adapters (autocast does the mixing), full-precision ones match them.
        dtype = reference.dtype if reference.dtype in (torch.float32, torch.float64) else None
        for attr in self.adapter_layer_names:
            container = getattr(self, attr)
            if adapter_name in container:
                container[adapter_name] = container[adapter_name].to(device=reference.device, dtype=dtype)

    def remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise PUMAError(NOT_MERGEABLE)

    def unmerge(self) -> None:
        raise PUMAError(NOT_MERGEABLE)


class PUMAWrapper(nn.Module, PUMALayer):
    """Base of the three PUMA modules: a PUMALayer that is an ``nn.Module`` and reads through to what it wraps."""

    def __getattr__(self, name: str) -> Any:
        # Backbones read attributes through the modules we wrap (ViTModel reads
        # `embeddings.patch_embeddings.projection.weight`), so unknown attributes come from the wrapped module.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_layer":
                raise
            return getattr(self.base_layer, name)


NOT_MERGEABLE = (
    "PUMA adapters cannot be merged into the backbone weights: each adapter is relu(x D) U, not a linear update, its "
    "gates are random in training, the prompts add tokens to the sequence, and the embedding head is a new module. "
    "Keep the PeftModel for inference, or call unload() to get the unchanged frozen backbone back."
)


class StochasticAdapter(PUMAWrapper):
    """A bottleneck adapter in parallel with one branch (attention or MLP) of a transformer block.

    ``h = x + Branch(LN(x)) + g * s * relu(LN(x) @ down) @ up`` (arXiv 2309.08944). The adapter reads the output of
    the branch's own LayerNorm (captured by a forward hook on that LayerNorm, which also fires when gradient
    checkpointing recomputes the block) and adds to the output of the module that ends the branch. ``g`` is a
    per-sample Bernoulli(keep_prob) gate divided by keep_prob in training, and 1 in eval.
    """

    adapter_layer_names = ("puma_down", "puma_up", "puma_scale")
    other_param_names = ("scale", "keep_prob")

    def __init__(self, base_layer: nn.Module, norm: nn.LayerNorm, site: str, adapter_name: str, config) -> None:
        super().__init__()
        self._init_puma_layer(base_layer, site)
        self.hidden_size = int(norm.normalized_shape[0])
        self.puma_down = nn.ParameterDict()
        self.puma_up = nn.ParameterDict()
        self.puma_scale = nn.ParameterDict()  # only for adapters with train_scale=True
        self.scale: dict[str, float] = {}
        self.keep_prob: dict[str, float] = {}
        self._branch_input: torch.Tensor | None = None
        self._hooks.append(norm.register_forward_hook(self._remember_branch_input))
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config) -> None:
        down = torch.empty(self.hidden_size, config.r)
        # kaiming_uniform_(a=1) on a d x r tensor draws from U(-sqrt(3/r), sqrt(3/r)): PyTorch takes r as its fan-in.
        nn.init.kaiming_uniform_(down, a=1)
        self.puma_down[adapter_name] = nn.Parameter(down)
        self.puma_up[adapter_name] = nn.Parameter(torch.zeros(config.r, self.hidden_size))  # U = 0: identity at init
        if config.train_scale:
            self.puma_scale[adapter_name] = nn.Parameter(torch.tensor(float(config.scale)))
        self.scale[adapter_name] = float(config.scale)
        self.keep_prob[adapter_name] = float(config.keep_prob)
        self._move_to_base_device(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def _remember_branch_input(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self._branch_input = output

    def gate(self, batch_size: int, adapter_name: str, device: torch.device) -> torch.Tensor | float:
        """Per-sample keep gate g / p, shape (B, 1, 1), drawn afresh at every training forward; 1 at eval."""
        keep_prob = self.keep_prob[adapter_name]
        if not self.training or keep_prob == 1.0:
            return 1.0
        keep = torch.full((batch_size, 1, 1), keep_prob, device=device)
        return torch.bernoulli(keep) / keep_prob

    @staticmethod
    def kept_samples(gate: torch.Tensor) -> torch.Tensor:
        """The sorted indices of the samples a drawn gate keeps (one device synchronisation on a GPU)."""
        return gate.view(-1).nonzero().view(-1)

    def adapter_output(self, branch_input: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``g * s * relu(x @ down) @ up`` for the branch input ``x = LN(h)``: the masked form, every sample computed.

        The order of the products keeps training memory low: the scale multiplies the small ``r x d`` matrix ``up``
        (so its gradient needs no activation), and the gate, which needs no gradient, multiplies the output; backward
        then keeps only ``x`` and the ReLU output, not a scaled copy of the bottleneck activations.
        """
        return self._up_projection(*self._bottleneck(branch_input, adapter_name))

    def add_adapter_output(
        self, branch_output: torch.Tensor, branch_input: torch.Tensor, adapter_name: str
    ) -> torch.Tensor:
        """``branch_output + adapter_output(branch_input)``, computing only what the gate keeps.

        In training the gate is drawn first (the same draw, in the same order, as the masked form's) and only the kept
        samples run the bottleneck (kept_rows.py): at ``p = 0.5`` about half of the adapter's work, with the values
        and gradients of the masked form. Where every row is kept (eval, ``p = 1``, or a draw that drops none) one
        ``addmm`` adds the up projection straight onto the branch output: no adapter-sized temporary. Under
        ``torch.compile`` the masked form runs instead: a row count that depends on the draw would break the graph.
        """
        gate = self.gate(branch_input.shape[0], adapter_name, branch_input.device)
        if isinstance(gate, float):
            return self._add_to_every_row(branch_output, branch_input, adapter_name, self.scaled_up(adapter_name))
        if torch.compiler.is_compiling():
            hidden = self._hidden(branch_input, adapter_name)
            gated = self._up_projection(hidden, self.scaled_up(adapter_name), gate)
            return branch_output + gated.to(branch_output.dtype)
        kept = self.kept_samples(gate)
        up = self.scaled_up(adapter_name) / self.keep_prob[adapter_name]  # the kept rows' gate, 1/p, folded into up
        if len(kept) == len(gate):
            return self._add_to_every_row(branch_output, branch_input, adapter_name, up)
        return add_on_kept_rows(branch_output, branch_input, self.puma_down[adapter_name], up, kept)

    def _add_to_every_row(
        self, branch_output: torch.Tensor, branch_input: torch.Tensor, adapter_name: str, up: torch.Tensor
    ) -> torch.Tensor:
        """``branch_output + relu(x @ down) @ up`` over the whole batch, in one ``addmm`` where shapes and dtypes agree
        (not under autocast, where the fp32 ``up`` meets low-precision activations)."""
        hidden = self._hidden(branch_input, adapter_name)
        fusable = branch_output.shape[:-1] == hidden.shape[:-1] and branch_output.dtype == hidden.dtype == up.dtype
        if fusable:
            width = branch_output.shape[-1]
            flat = torch.addmm(branch_output.reshape(-1, width), hidden.reshape(-1, hidden.shape[-1]), up)
            return flat.view(branch_output.shape)
        return branch_output + (hidden @ up).to(branch_output.dtype)

    def _hidden(self, branch_input: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``relu(x @ down)``, in place: the product is a fresh temporary."""
        down = self.puma_down[adapter_name]
        return torch.relu_(branch_input.to(down.dtype) @ down)

    def _bottleneck(
        self, branch_input: torch.Tensor, adapter_name: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | float]:
        """``relu(x @ down)``, the scaled up matrix ``s * up`` and the gate."""
        hidden = self._hidden(branch_input, adapter_name)
        gate = self.gate(branch_input.shape[0], adapter_name, branch_input.device)
        return hidden, self.scaled_up(adapter_name), gate

    def scaled_up(self, adapter_name: str) -> torch.Tensor:
        """``s * up``, shape (r, d): the up matrix times the adapter's scale, fixed or trained (``train_scale``)."""
        scale = self.puma_scale[adapter_name] if adapter_name in self.puma_scale else self.scale[adapter_name]
        return self.puma_up[adapter_name] * scale

    @staticmethod
    def _up_projection(hidden: torch.Tensor, weight: torch.Tensor, gate: torch.Tensor | float) -> torch.Tensor:
        output = hidden @ weight
        return output if isinstance(gate, float) else output * gate  # the gate is the float 1 at eval and p = 1

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        output = self.base_layer(*args, **kwargs)
        branch_input, self._branch_input = self._branch_input, None
        adapter_name = self.active_puma_adapter()
        if adapter_name is None:
            return output
        if branch_input is None:
            raise PUMAError(
                f"The PUMA adapter at {self.puma_site} found no LayerNorm output to read: call the whole transformer "
                "block (or the model), not the wrapped branch module on its own."
            )
        if isinstance(output, tuple):  # attention modules return (hidden_states, attention_weights)
            return (self.add_adapter_output(output[0], branch_input, adapter_name), *output[1:])
        return self.add_adapter_output(output, branch_input, adapter_name)
