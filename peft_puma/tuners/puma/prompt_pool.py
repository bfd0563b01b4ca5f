"""The conditional prompt pool (arXiv 2309.08944), wrapped around the backbone's embeddings module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layer import PUMAWrapper

ORTHOGONALITY_COEFFICIENT = 1e-6


def orthogonality(matrix: torch.Tensor) -> torch.Tensor:
    """``ortho(T) = mean((T T^T - I)^2)``: how far the rows of ``T`` are from orthonormal."""
    gram = matrix @ matrix.T
    return (gram - torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)).pow(2).mean()


class ConditionalPromptPool(PUMAWrapper):
    """Inserts per-image prompts after the prefix tokens of the embeddings module's output.

    For image patches ``E`` (the patch-projection output, before CLS and position embeddings):
    ``q = stopgrad((mean_N E + max_N E) / 2)``, ``w_m = cos(q * softmax(attention_m), keys_m)``,
    ``p(x) = sum_m w_m prompts_m``; the sequence becomes ``[prefix, p(x) + pos_CLS, patches]``.
    With one prompt (M = 1) there is nothing to condition on: ``p(x) = prompts_1`` for every image (Table 3 "Sing.").
    """

    adapter_layer_names = ("puma_prompts", "puma_keys", "puma_attention")

    def __init__(
        self,
        base_layer: nn.Module,
        patch_projection: nn.Module,
        cls_position: Callable[[nn.Module], torch.Tensor],
        num_prefix_tokens: int,
        hidden_size: int,
        adapter_name: str,
        config,
    ) -> None:
        super().__init__()
        self._init_puma_layer(base_layer, "prompt_pool")
        self.hidden_size = hidden_size
        self.num_prefix_tokens = num_prefix_tokens
        self._cls_position = cls_position
        self.puma_prompts = nn.ParameterDict()  # (M, L, d)
        self.puma_keys = nn.ParameterDict()  # (M, d), conditional pools only
        self.puma_attention = nn.ParameterDict()  # (M, d), conditional pools only
        self._patch_tokens: torch.Tensor | None = None
        self._hooks.append(patch_projection.register_forward_hook(self._remember_patch_tokens))
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config) -> None:
        # Published init: one orthogonal L x d component copied into all M slots; orthogonal keys and attention.
        component = nn.init.orthogonal_(torch.empty(config.prompt_length, self.hidden_size))
        self.puma_prompts[adapter_name] = nn.Parameter(component.unsqueeze(0).repeat(config.num_prompts, 1, 1))
        if config.conditional_prompts:
            self.puma_keys[adapter_name] = nn.Parameter(
                nn.init.orthogonal_(torch.empty(config.num_prompts, self.hidden_size))
            )
            self.puma_attention[adapter_name] = nn.Parameter(
                nn.init.orthogonal_(torch.empty(config.num_prompts, self.hidden_size))
            )
        self._move_to_base_device(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def _remember_patch_tokens(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self._patch_tokens = output

    @staticmethod
    def query(patch_tokens: torch.Tensor) -> torch.Tensor:
        """``q = (mean_N(E) + max_N(E)) / 2`` with gradients stopped; a (B, d, h, w) map is read as (B, h*w, d)."""
        if patch_tokens.ndim == 4:
            patch_tokens = patch_tokens.flatten(2).transpose(1, 2)
        patch_tokens = patch_tokens.detach()
        return (patch_tokens.mean(dim=1) + patch_tokens.amax(dim=1)) / 2

    def prompt_weights(self, query: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``w_m = cos(q * softmax(A_m), K_m)`` (softmax over the d features of each A_m), shape (B, M)."""
        keys, attention = self.puma_keys[adapter_name], self.puma_attention[adapter_name]
        attended = query.to(keys.dtype).unsqueeze(1) * attention.softmax(dim=-1).unsqueeze(0)  # (B, M, d)
        return F.cosine_similarity(attended, keys.unsqueeze(0), dim=-1)

    def image_prompt_weights(self, pixel_values: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``w_m`` of each image, shape (B, M), running only the wrapped embeddings (to record ``E``)."""
        self.base_layer(pixel_values)
        patch_tokens, self._patch_tokens = self._patch_tokens, None
        return self.prompt_weights(self.query(patch_tokens), adapter_name)

    def prompts_for(self, patch_tokens: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """The prompt tokens ``p(x)`` of every image, shape (B, L, d)."""
        prompts = self.puma_prompts[adapter_name]
        batch_size = patch_tokens.shape[0]
        if adapter_name not in self.puma_keys:  # single prompt: no conditioning
            return prompts[0].unsqueeze(0).expand(batch_size, -1, -1)
        weights = self.prompt_weights(self.query(patch_tokens), adapter_name)
        return torch.einsum("bm,mld->bld", weights.to(prompts.dtype), prompts)

    def cls_position(self) -> torch.Tensor:
        """The CLS token's position embedding, which every prompt token receives (arXiv 2309.08944)."""
        return self._cls_position(self.base_layer)

    def orthogonality_loss(self, adapter_name: str) -> torch.Tensor:
        """``1e-6 * (ortho(K) + ortho(A) + ortho(P.reshape(M, L*d)))`` over the tensors this pool has."""
        prompts = self.puma_prompts[adapter_name]
        total = orthogonality(prompts.reshape(prompts.shape[0], -1))
        if adapter_name in self.puma_keys:
            total = (
                total + orthogonality(self.puma_keys[adapter_name]) + orthogonality(self.puma_attention[adapter_name])
            )
        return ORTHOGONALITY_COEFFICIENT * total

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        tokens = self.base_layer(*args, **kwargs)
        patch_tokens, self._patch_tokens = self._patch_tokens, None
        adapter_name = self.active_puma_adapter()
        if adapter_name is None:
            return tokens
        prompts = self.prompts_for(patch_tokens, adapter_name) + self.cls_position().to(
            self.puma_prompts[adapter_name].dtype
        )
        prefix = self.num_prefix_tokens
        return torch.cat([tokens[:, :prefix], prompts.to(tokens.dtype), tokens[:, prefix:]], dim=1)
