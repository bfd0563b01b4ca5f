"""The PUMA tuner: finds the places of a backbone PUMA adapts, wraps them, and keeps saved keys canonical.

Nothing numerical happens here; the equations live in ``layer.py`` (adapters), ``prompt_pool.py`` and ``head.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTuner
from torch import nn

from ...errors import (
    IncompatibleCheckpointError,
    InvalidConfigError,
    InvalidInputError,
    PUMAError,
    UnsupportedModelError,
)
from .checkpoint_keys import CANONICAL_PREFIX, model_to_canonical_keys, remap_for_load
from .config import PUMAConfig
from .families import PUMASites, resolve_sites
from .fusion import FusedPUMAModel, fuse_for_inference
from .head import EmbeddingHead
from .layer import NOT_MERGEABLE, PUMALayer, StochasticAdapter
from .output import PUMAOutput
from .prompt_pool import ConditionalPromptPool
from .transformers_integration import TransformersIntegrationError, refusal_message

# Which part of PUMA each trainable tensor belongs to; the recipe gives each part its own learning rate.
PARAMETER_GROUPS: dict[str, str] = {
    "puma_down": "adapters",
    "puma_up": "adapters",
    "puma_scale": "adapters",
    "puma_prompts": "prompts",
    "puma_keys": "prompts",
    "puma_attention": "prompts",
    "puma_projection": "head",
}

_REFUSED_INPUTS = {
    "attention_mask": "an attention mask (PUMA inserts prompt tokens, so a mask over the original tokens would be "
    "misaligned; ViT-family image encoders attend to every token)",
    "bool_masked_pos": "masked patches (masked image modeling); PUMA's prompt query reads the unmasked patches",
}


class PUMAModel(BaseTuner):
    """Creates a PUMA model (arXiv 2309.08944) from a frozen ViT-family transformers model.

    ``get_peft_model(vit, PUMAConfig())`` wraps, for the active adapter: every transformer block's attention and MLP
    branch with a :class:`StochasticAdapter`, the embeddings module with a :class:`ConditionalPromptPool`, and the final
    LayerNorm with an :class:`EmbeddingHead`. The model's forward then returns a :class:`PUMAOutput` whose
    ``embeddings`` are the L2-normalised retrieval embeddings.
    """

    prefix: str = "puma_"
    tuner_layer_cls = PUMALayer
    target_module_mapping: dict[str, list[str]] = {}

    def __init__(self, model, peft_config, adapter_name, low_cpu_mem_usage: bool = False, state_dict=None) -> None:
        if not isinstance(peft_config, dict):
            # A PeftModel (get_peft_model, PeftModel.from_pretrained) hands its tuner {adapter name: config}; a bare
            # config comes from peft.inject_adapter_in_model, the route of transformers' load_adapter and
            # from_pretrained(<adapter folder>), which would leave PUMA's weights untrained. Refuse before any change.
            raise TransformersIntegrationError(refusal_message(peft_config))
        super().__init__(model, peft_config, adapter_name, low_cpu_mem_usage=low_cpu_mem_usage, state_dict=state_dict)

    # ------------------------------------------------------------------ injection
    @staticmethod
    def _prepare_adapter_config(peft_config: PUMAConfig, model_config: dict) -> PUMAConfig:
        return peft_config  # targets come from the backbone-family table, not from `target_modules`

    def _prepare_model(self, peft_config: PUMAConfig, model: nn.Module) -> None:
        self._sites: PUMASites = resolve_sites(model, peft_config.layers)
        family = self._sites.family.name
        if peft_config.backbone_family is None:
            peft_config.backbone_family = family
        elif peft_config.backbone_family != family:
            raise IncompatibleCheckpointError(
                f"This PUMA adapter was made for a {peft_config.backbone_family!r} backbone, but "
                f"{type(model).__name__} is a {family!r} backbone; adapters and prompts do not transfer across "
                "architectures. Load it into the backbone it was trained on."
            )
        self._targets: dict[str, Any] = {self._sites.final_norm: "head"}
        if peft_config.use_prompts:
            self._targets[self._sites.embeddings] = "prompts"
        if peft_config.use_adapters:
            self._targets.update({site.output: site for site in self._sites.adapters})

    def _check_target_module_exists(self, peft_config: PUMAConfig, key: str) -> bool:
        return key in self._targets

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key) -> None:
        if isinstance(target, PUMALayer):
            target.update_layer(adapter_name, peft_config)
            return
        role = self._targets[current_key]
        sites = self._sites
        if role == "head":
            new_module = EmbeddingHead(target, sites.hidden_size, adapter_name, peft_config)
        elif role == "prompts":
            new_module = ConditionalPromptPool(
                target,
                patch_projection=self.model.get_submodule(sites.patch_projection),
                cls_position=sites.family.cls_position,
                num_prefix_tokens=sites.num_prefix_tokens,
                hidden_size=sites.hidden_size,
                adapter_name=adapter_name,
                config=peft_config,
            )
        else:
            norm = self.model.get_submodule(role.norm)
            new_module = StochasticAdapter(target, norm, role.canonical_name, adapter_name, peft_config)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)  # an added adapter is not trainable until it is set active
        self._replace_module(parent, target_name, new_module, target)

    def _replace_module(self, parent, child_name, new_module, child) -> None:
        # PEFT's version assumes the wrapped module has a `weight` (true of Linear layers, not of the embeddings,
        # attention or LayerScale modules PUMA wraps) and breaks `unload()`; device placement is all we need.
        setattr(parent, child_name, new_module)
        reference = next(child.parameters(), None)
        if reference is not None:
            for name, module in new_module.named_modules():
                if self.prefix in name:
                    module.to(reference.device)

    def _post_injection_hook(self, model: nn.Module, config: PUMAConfig, adapter_name: str) -> None:
        self._share_initial_down_projections(adapter_name)
        if not getattr(self, "_model_hooks", None):
            self._model_hooks = [
                model.register_forward_pre_hook(self._check_inputs, with_kwargs=True),
                model.register_forward_hook(self._attach_embeddings),
            ]

    def _share_initial_down_projections(self, adapter_name: str) -> None:
        """Both adapters of a block start from the same ``down`` matrix (the code released with arXiv 2309.08944)."""
        adapters = {m.puma_site: m for m in self.model.modules() if isinstance(m, StochasticAdapter)}
        with torch.no_grad():
            for site, module in adapters.items():
                if site.endswith(".mlp") and adapter_name in module.puma_down:
                    attention = adapters.get(site.removesuffix(".mlp") + ".attention")
                    if attention is not None and adapter_name in attention.puma_down:
                        module.puma_down[adapter_name].copy_(attention.puma_down[adapter_name])

    # ------------------------------------------------------------------ forward
    def _check_inputs(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        for name, what in _REFUSED_INPUTS.items():
            if kwargs.get(name) is not None:
                raise UnsupportedModelError(f"PUMA does not support {what}; call the model without `{name}`.")
        pixel_values = kwargs.get("pixel_values", args[0] if args else None)
        if not isinstance(pixel_values, torch.Tensor):
            raise InvalidInputError(
                "PUMA models take images as a `pixel_values` tensor of shape (batch, channels, height, width), "
                f"got {type(pixel_values).__name__}."
            )
        channels = getattr(self.model.config, "num_channels", None)
        if pixel_values.ndim != 4 or (channels is not None and pixel_values.shape[1] != channels):
            raise InvalidInputError(
                f"`pixel_values` must have shape (batch, {channels or 'channels'}, height, width), "
                f"got {tuple(pixel_values.shape)}."
            )
        if not pixel_values.is_floating_point():
            raise InvalidInputError(
                f"`pixel_values` must be a floating-point tensor of normalised images, got {pixel_values.dtype}; "
                "use the backbone's image processor or peft_puma's eval transform."
            )

    def _attach_embeddings(self, module: nn.Module, args: tuple, output: Any) -> Any:
        embeddings = self._head().pop_embeddings()
        if isinstance(output, tuple):
            return (embeddings, *output)
        return PUMAOutput(embeddings=embeddings, backbone_output=output)

    def _head(self) -> EmbeddingHead:
        return self.model.get_submodule(self._sites.final_norm)

    def regularization_loss(self) -> torch.Tensor:
        """The weighted orthogonality regulariser of the active adapter's prompt pool (arXiv 2309.08944),
        for the training loop to add to its loss; zero when the adapter has no prompt pool."""
        adapter_name = self._single_active_adapter()
        pool = self.model.get_submodule(self._sites.embeddings)
        if not isinstance(pool, ConditionalPromptPool) or adapter_name not in pool.puma_prompts:
            return self._head().puma_projection[adapter_name].weight.new_zeros(())
        return self.peft_config[adapter_name].regularization_weight * pool.orthogonality_loss(adapter_name)

    @torch.no_grad()
    def prompt_weights(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The conditional prompt pool's weights ``w_m`` for each image, shape (B, M) (arXiv 2309.08944, Sec. 3;
        docs/spec.md section 3, step 3): which prompts an image draws on, as in the paper's Fig. 3. Only the
        backbone's embeddings run."""
        adapter_name = self._single_active_adapter()
        pool = self.model.get_submodule(self._sites.embeddings)
        if not isinstance(pool, ConditionalPromptPool) or adapter_name not in pool.puma_keys:
            raise InvalidConfigError(
                f"Adapter {adapter_name!r} has no conditional prompt pool (a single prompt or none), so its images "
                "have no prompt weights."
            )
        return pool.image_prompt_weights(pixel_values, adapter_name)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The trainable tensors of the active adapter by part (``adapters``, ``prompts``, ``head``), so a training
        loop can give each part its learning rate (arXiv 2309.08944) without knowing internal names."""
        adapter_name = self._single_active_adapter()
        groups: dict[str, list[nn.Parameter]] = {"adapters": [], "prompts": [], "head": []}
        for module in self.model.modules():
            if isinstance(module, PUMALayer):
                for attr in module.adapter_layer_names:
                    container = getattr(module, attr)
                    if adapter_name in container:
                        value = container[adapter_name]
                        params = [value] if isinstance(value, nn.Parameter) else list(value.parameters())
                        groups[PARAMETER_GROUPS[attr]].extend(params)
        return groups

    def fuse_for_inference(self) -> FusedPUMAModel:
        """An eval-only copy of this model with the active adapter folded into the frozen linears beside it: the same
        embeddings at the cost of its FLOPs (docs/fusion.md). This model is left unchanged."""
        return fuse_for_inference(self)

    def _single_active_adapter(self) -> str:
        active = self.active_adapters
        if len(active) != 1:
            raise InvalidConfigError(f"PUMA runs exactly one adapter at a time; active adapters are {active}.")
        return active[0]

    # ------------------------------------------------------------------ adapter management
    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        if not isinstance(adapter_name, str):
            names = list(adapter_name)
            if len(names) != 1:
                raise InvalidConfigError(
                    f"PUMA runs exactly one adapter at a time (each has its own prompts and head); got {names}."
                )
            adapter_name = names[0]
        if adapter_name not in self.peft_config:
            raise InvalidConfigError(f"No PUMA adapter named {adapter_name!r}; known: {sorted(self.peft_config)}.")
        super().set_adapter(adapter_name, inference_mode=inference_mode)

    def _check_new_adapter_config(self, config: PUMAConfig) -> None:
        if not isinstance(config, PUMAConfig):
            raise InvalidConfigError(f"PUMA adapters need a PUMAConfig, got {type(config).__name__}.")

    def _check_merge_allowed(self) -> None:
        raise PUMAError(NOT_MERGEABLE)

    def _unload_and_optionally_merge(self, merge: bool = True, **kwargs: Any) -> nn.Module:
        if merge:
            self._check_merge_allowed()
        for module in self.model.modules():
            if isinstance(module, PUMALayer):
                module.remove_hooks()
        for handle in getattr(self, "_model_hooks", []):
            handle.remove()
        self._model_hooks = []
        return super()._unload_and_optionally_merge(merge=False, **kwargs)

    # ------------------------------------------------------------------ checkpoints (see checkpoint_keys.py)
    @classmethod
    def _get_adapter_state_dict(cls, model, config, adapter_name, state_dict, unwanted_adapter_names):
        mapping = model_to_canonical_keys(model, adapter_name)
        return {canonical: state_dict[key] for key, canonical in mapping.items() if key in state_dict}

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        if key.startswith(CANONICAL_PREFIX):
            return key
        return super()._remove_adapter_name_from_key(key, adapter_name)

    @classmethod
    def _remap_adapter_state_dict_for_load(cls, model, config, adapter_name, state_dict):
        return remap_for_load(model, adapter_name, state_dict)
