"""A gated adapter's training step computed on the samples its gate keeps, and nothing for the others.

In training each stochastic adapter adds ``g * s * relu(x @ down) @ up`` with a per-sample Bernoulli gate ``g`` in
``{0, 1/p}`` (arXiv 2309.08944, Sec. 3.2). Computing every sample's bottleneck and multiplying the dropped ones by zero
spends, at ``p = 0.5``, half of the adapter's forward and backward on rows that contribute nothing. Here the kept rows
are gathered, their bottleneck computed, and ``relu(x_k @ down) @ (s/p * up)`` added back into those rows of the branch
output: the same values and gradients as the masked form, for about ``p`` of its work.

The gather is done in an autograd function so that backward keeps only what it needs: the LayerNorm output ``x``
(which the frozen branch keeps anyway, so it costs nothing extra) and the kept rows' ReLU output. Letting autograd
record the gather would also keep the gathered copy ``x_k``, a new ``p * B x T x d`` tensor per adapter, and training
would need more memory than the masked form instead of less; backward gathers ``x_k`` again instead.
"""

from __future__ import annotations

from typing import Any

import torch


class KeptRowsAdapter(torch.autograd.Function):
    """``branch_output`` plus ``relu(x[kept] @ down) @ up`` in the rows ``kept``; the other rows unchanged.

    ``down`` (d, r) and ``up`` (r, d') come in the dtype the products run in (the caller casts them, so their
    gradients flow back to the fp32 parameters through the cast); ``up`` already carries ``s / p``. ``kept`` holds the
    sorted indices of the kept samples along the batch dimension.
    """

    @staticmethod
    def forward(
        ctx: Any,
        branch_output: torch.Tensor,
        branch_input: torch.Tensor,
        down: torch.Tensor,
        up: torch.Tensor,
        kept: torch.Tensor,
    ) -> torch.Tensor:
        ctx.input_dtype, ctx.input_shape = branch_input.dtype, branch_input.shape
        if kept.numel() == 0:  # no row kept: nothing to compute, and the adapter's gradients are exact zeros
            ctx.save_for_backward(down, up)
            ctx.nothing_kept = True
            return branch_output.clone()
        ctx.nothing_kept = False
        with torch.autocast(branch_output.device.type, enabled=False):  # the caller chose the dtype already
            rows = branch_input.index_select(0, kept).to(down.dtype)
            hidden = torch.relu_(rows.flatten(0, -2) @ down)  # (k * T, r)
            contribution = (hidden @ up).view(*rows.shape[:-1], up.shape[-1])
            output = branch_output.index_add(0, kept, contribution.to(branch_output.dtype))
        ctx.save_for_backward(branch_input, hidden, down, up, kept)
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if ctx.nothing_kept:
            # Zeros, not None: the parameters then get a (zero) gradient as from the masked form, so the optimiser's
            # moments and weight decay step as they would, and DDP sees every parameter used.
            down, up = ctx.saved_tensors
            return grad_output, None, torch.zeros_like(down), torch.zeros_like(up), None
        branch_input, hidden, down, up, kept = ctx.saved_tensors
        with torch.autocast(grad_output.device.type, enabled=False):
            grad_rows = grad_output.index_select(0, kept).to(up.dtype).flatten(0, -2)  # (k * T, d')
            grad_up = hidden.T @ grad_rows
            grad_hidden = (grad_rows @ up.T).masked_fill_(hidden == 0, 0.0)  # relu's backward: hidden = 0 where clipped
            rows = branch_input.index_select(0, kept).to(down.dtype).flatten(0, -2)  # gathered again, not kept
            grad_down = rows.T @ grad_hidden
            grad_input = None
            if ctx.needs_input_grad[1]:
                grad_rows_input = (grad_hidden @ down.T).view(len(kept), *ctx.input_shape[1:])
                grad_input = grad_output.new_zeros(ctx.input_shape, dtype=ctx.input_dtype)
                grad_input.index_copy_(0, kept, grad_rows_input.to(ctx.input_dtype))
        return grad_output, grad_input, grad_down, grad_up, None


def add_on_kept_rows(
    branch_output: torch.Tensor,
    branch_input: torch.Tensor,
    down: torch.Tensor,
    up: torch.Tensor,
    kept: torch.Tensor,
) -> torch.Tensor:
    """``branch_output`` with ``relu(x @ down) @ up`` added in the rows ``kept`` (see :class:`KeptRowsAdapter`).

    Under autocast the products run in autocast's dtype, as they would as plain matmuls; ``down`` and ``up`` are cast
    here so that autograd carries their gradients back to the parameters' dtype.
    """
    device = branch_output.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else down.dtype
    return KeptRowsAdapter.apply(branch_output, branch_input, down.to(dtype), up.to(dtype), kept)
