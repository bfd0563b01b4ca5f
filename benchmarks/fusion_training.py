"""Would folding the adapters into the frozen linears speed up a PUMA training step too? A measurement (docs/fusion.md).

    python benchmarks/fusion_training.py --output benchmarks/results/fusion_training_vits16_cpu.json

The fused eval path (``peft_puma.fuse_for_inference``) joins each adapter's down projection to the frozen linears
that read the same LayerNorm output. In training the gates are per-sample and ``D``, ``U`` change every step, so a
training form must rebuild the joined matrix each step and gate the bottleneck before the up projection:
``h = x + o_proj(Attn) + (g * relu(a)) @ (s U)`` with ``[q | k | v | a] = LN(x) @ [W_q | W_k | W_v | D]``, and the same
for the MLP. Two such forms are timed against the trainer's unfused adapters, on a ViT-S/16-shaped PUMA model in
training mode (forward, a loss on the embeddings, backward; no optimiser step, which is the same for all three):

- ``autograd``: the joined product left to autograd, which then also computes the gradient of the whole joined weight,
  frozen columns included (they are one tensor), and throws the frozen part away;
- ``custom``: the joined product as an ``autograd.Function`` whose backward computes the input's gradient with the
  joined matrix (one product) and only ``D``'s weight gradient.

Each form is checked against the unfused model with the same gates (same seed): embeddings and every trainable
gradient. The prototype covers the ViT family's layout, which is what the benchmark's backbone is.
"""

from __future__ import annotations

import argparse
import copy
import functools
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from cost_models import SHAPES, Runtime, build_method, make_batch
from cost_timing import interleaved_timings
from run_info import check_output, load_average, run_info
from script_options import add_option
from torch import nn

from peft_puma.cpu_threads import configure_torch_threads
from peft_puma.owned_paths import write_json_atomically
from peft_puma.tuners.puma import StochasticAdapter


class _JoinedDown(torch.autograd.Function):
    """``x @ [W ; D^T]^T + [b ; 0]`` whose backward computes the input's gradient in one product and the weight
    gradient of ``D`` only (``W``, ``b`` are frozen)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, frozen_weight: torch.Tensor, frozen_bias: torch.Tensor, down: torch.Tensor):
        weight = torch.cat([frozen_weight, down.T])
        ctx.save_for_backward(x, weight)
        ctx.rank = down.shape[1]
        return F.linear(x, weight, torch.cat([frozen_bias, frozen_bias.new_zeros(ctx.rank)]))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad @ weight
        flat_x, flat_grad = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
        grad_down = flat_x.T @ flat_grad[:, -ctx.rank :]
        return grad_x, None, None, grad_down


class _TrainingFold(nn.Module):
    """One branch (attention or MLP) with its adapter joined in, in training mode, sharing the adapter's tensors."""

    def __init__(self, branch: nn.Module, adapter: StochasticAdapter, inputs: Sequence[str], custom: bool) -> None:
        super().__init__()
        self.branch = branch
        self.adapter = adapter
        self.input_names = tuple(inputs)
        self.custom = custom

    def joined(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        linears = [getattr(self.branch, name) for name in self.input_names]
        weight = torch.cat([linear.weight for linear in linears])
        bias = torch.cat([linear.bias for linear in linears])
        down = self.adapter.puma_down["default"]
        if self.custom:
            projected = _JoinedDown.apply(x, weight, bias, down)
        else:
            projected = F.linear(x, torch.cat([weight, down.T]), torch.cat([bias, bias.new_zeros(down.shape[1])]))
        return projected.split([linear.out_features for linear in linears] + [down.shape[1]], dim=-1)

    def add_adapter(self, output: torch.Tensor, bottleneck: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(bottleneck)
        gate = self.adapter.gate(hidden.shape[0], "default", hidden.device)
        hidden = hidden if isinstance(gate, float) else hidden * gate
        return output + hidden @ self.adapter.scaled_up("default")


class _FoldedAttention(_TrainingFold):
    def forward(self, hidden_states: torch.Tensor, attention_mask: Any = None, **kwargs: Any):
        query, key, value, bottleneck = self.joined(hidden_states)
        heads = (*hidden_states.shape[:-1], self.branch.config.num_attention_heads, -1)
        context = F.scaled_dot_product_attention(
            *(t.view(heads).transpose(1, 2) for t in (query, key, value)), scale=self.branch.scaling
        )
        output = self.branch.o_proj(context.transpose(1, 2).reshape(*hidden_states.shape[:-1], -1))
        return self.add_adapter(output, bottleneck), None


class _FoldedMLP(_TrainingFold):
    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden, bottleneck = self.joined(hidden_states)
        return self.add_adapter(self.branch.fc2(self.branch.activation_fn(hidden)), bottleneck)


def folded_copy(model: nn.Module, custom: bool) -> nn.Module:
    """A copy of a ViT PUMA model whose adapters run as training folds (the LayerNorm hooks removed)."""
    model = copy.deepcopy(model)
    for block in model.get_base_model().layers:
        for name, fold, inputs in (
            ("attention", _FoldedAttention, ("q_proj", "k_proj", "v_proj")),
            ("mlp", _FoldedMLP, ("fc1",)),
        ):
            adapter = getattr(block, name)
            adapter.remove_hooks()
            setattr(block, name, fold(adapter.base_layer, adapter, inputs, custom))
    return model


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def step(model: nn.Module, pixels: torch.Tensor, weights: torch.Tensor, seed: int) -> tuple[torch.Tensor, list]:
    """Forward with the gates of ``seed``, a fixed linear loss on the embeddings, backward."""
    torch.manual_seed(seed)
    embeddings = model(pixel_values=pixels).embeddings
    grads = torch.autograd.grad((embeddings * weights).sum(), trainable(model))
    return embeddings.detach(), list(grads)


def largest_differences(models: dict[str, nn.Module], pixels: torch.Tensor, weights: torch.Tensor) -> dict:
    """Each fold's largest difference from the unfused model: embeddings and trainable gradients, same gates."""
    reference, reference_grads = step(models["unfused"], pixels, weights, seed=11)
    result = {}
    for name, model in models.items():
        if name == "unfused":
            continue
        embeddings, grads = step(model, pixels, weights, seed=11)
        result[name] = {
            "embeddings": (embeddings - reference).abs().max().item(),
            "gradients": max((g - r).abs().max().item() for g, r in zip(grads, reference_grads, strict=True)),
        }
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    option = functools.partial(add_option, parser)
    option("--output", required=True, help="JSON file to write")
    option("--shape", default="vit_s16", choices=sorted(SHAPES), help="backbone shape (tiny: CI)")
    option("--batch_size", type=int, default=8)
    option("--warmup", type=int, default=1)
    option("--repeats", type=int, default=5, help="timed rounds (medians reported)")
    option("--threads", type=int, help="torch intra-op threads (default: the cores this process may use)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_output(args.output)
    threads = args.threads or configure_torch_threads()
    torch.set_num_threads(threads)
    info, start = run_info(threads), time.perf_counter()
    shape = SHAPES[args.shape]
    unfused = build_method("puma", shape.vit()).train()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained-looking adapters: U = 0 at initialisation would hide a wrong up projection
        for parameter in trainable(unfused):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    models = {"unfused": unfused, "autograd": folded_copy(unfused, False), "custom": folded_copy(unfused, True)}
    pixels, _ = make_batch(args.batch_size, shape.image_size, 1, 2)
    weights = torch.randn(args.batch_size, unfused.peft_config["default"].embedding_size, generator=generator)
    differences = largest_differences(models, pixels, weights)
    tasks: dict[str, Callable[[], Any]] = {
        name: functools.partial(step, model, pixels, weights, 5) for name, model in models.items()
    }
    timings = interleaved_timings(tasks, args.warmup, args.repeats, Runtime())
    result = {
        "benchmark": "fusion_training",
        **info,
        "settings": {
            "shape": args.shape,
            "batch_size": args.batch_size,
            "warmup": args.warmup,
            "repeats": args.repeats,
        },
        "step": "forward in training mode (gates drawn), linear loss on the embeddings, backward; no optimiser",
        "timings": {name: vars(timing) for name, timing in timings.items()},
        "wall_vs_unfused": {name: timings[name].wall_s / timings["unfused"].wall_s for name in timings},
        "cpu_vs_unfused": {name: timings[name].cpu_s / timings["unfused"].cpu_s for name in timings},
        "largest_difference_vs_unfused": differences,
        "load_average_end": load_average(),
        "elapsed_s": time.perf_counter() - start,
    }
    write_json_atomically(args.output, result)
    for name in timings:
        print(
            f"{name}: {timings[name].wall_s:.3f} s per step, {result['wall_vs_unfused'][name]:.3f}x unfused wall, "
            f"{result['cpu_vs_unfused'][name]:.3f}x CPU time; differences {differences.get(name, '-')}"
        )
    print(f"load average start {info['load_average_start']}, end {result['load_average_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
