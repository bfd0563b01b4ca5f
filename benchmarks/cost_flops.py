"""Floating-point operations of one forward pass, counted by PyTorch's ``FlopCounterMode`` (every product's exact
count from the shapes that actually ran): the floor the cost benchmark sets each model form's time against.

The counter knows the matrix products, convolutions and the GPU attention kernels. Two operators it leaves out are
added here with the counter's own formulas: ``_scaled_dot_product_flash_attention_for_cpu``, what
``scaled_dot_product_attention`` runs on a CPU (two batched products, ``QK^T`` and ``AV``), and the in-place
``addmm_`` with which the fused PUMA path accumulates its up projections (``peft_puma.tuners.puma.fusion``).
Element-wise work (LayerNorm, GELU, softmax, residual additions) is not counted: it grows with the tokens only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

_aten = torch.ops.aten


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _addmm_in_place_flops(bias_shape, first_shape, second_shape, *args: Any, out_shape=None, **kwargs: Any) -> int:
    rows, inner = first_shape
    return 2 * rows * inner * second_shape[1]


EXTRA_FORMULAS = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    _aten.addmm_: _addmm_in_place_flops,
}


def count_flops(model: nn.Module, pixel_values: torch.Tensor) -> int:
    """FLOPs of ``model(pixel_values=...)`` in eval mode under ``torch.inference_mode``, all images together."""
    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS) as counter:
        model(pixel_values=pixel_values)
    return counter.get_total_flops()
