"""Where a training step's time goes: the trainer's step profiled once per method and split into parts (docs/cost.md).

The parts are those of PUMA's step: the frozen backbone's forward, the backward through its activations (what every
method pays to reach prompts and adapters, or full fine-tuning's weights), the adapters' own work, the gates (drawing
them and finding the kept samples), the conditional prompt pool, the head and the loss, and the optimiser (the
gradient clamp, AdamW, the schedule, and storing each trainable tensor's gradient).

How: ``torch.profiler`` records one step while forward hooks open a labelled scope around each PUMA module (the
frozen module it wraps gets the frozen label back), so every forward op belongs to the innermost part around it.
Backward ops run later, outside those scopes; each backward node is given the part of the forward op that created it
(the profiler records both with the same autograd sequence number), and a node of a frozen op counts as activation
backward. Shares of the profiled step are what this measures; the profiler's own overhead (a few microseconds per op)
falls mostly on the parts made of many small ops, the gates above all, so they read a little high.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from peft_puma.tuners.puma import ConditionalPromptPool, EmbeddingHead, StochasticAdapter

FROZEN_FORWARD = "frozen forward"
ACTIVATION_BACKWARD = "activation backward"
ADAPTERS, GATES, PROMPT_POOL = "adapters", "gates", "prompt pool"
HEAD_AND_LOSS, OPTIMIZER = "head and loss", "optimizer"
PARTS = (FROZEN_FORWARD, ACTIVATION_BACKWARD, ADAPTERS, GATES, PROMPT_POOL, HEAD_AND_LOSS, OPTIMIZER)

_LABEL = "part:"
_BACKWARD_NODE = "autograd::engine::evaluate_function: "
_GRADIENT_STORE = "torch::autograd::AccumulateGrad"
_MODULE_PARTS: tuple[tuple[type[nn.Module], str], ...] = (
    (StochasticAdapter, ADAPTERS),
    (ConditionalPromptPool, PROMPT_POOL),
    (EmbeddingHead, HEAD_AND_LOSS),
)


def step_breakdown(step: Any, pixels: torch.Tensor, labels: torch.Tensor, device: str = "cpu") -> dict[str, float]:
    """Seconds of each part (:data:`PARTS`) in one profiled call of the trainer's ``step`` (a ``TrainingStep``).

    On a GPU the parts add up the device time of their kernels; on a CPU the time of their ops.
    """
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with _labelled_parts(step.objective), profile(activities=activities) as profiler:
        with record_function(_LABEL + FROZEN_FORWARD):  # whatever no PUMA module claims is the backbone's
            losses = step.forward(pixels, labels)
        with record_function(_LABEL + OPTIMIZER):  # backward nodes inside it are claimed by their forward op's part
            step.update(losses)
        if device == "cuda":
            torch.cuda.synchronize()
    return split_by_part(profiler.events(), device)


def split_by_part(events: Any, device: str = "cpu") -> dict[str, float]:
    """The seconds of each part in a profile recorded under :func:`_labelled_parts` (see the module docstring)."""
    timer = "device" if device == "cuda" else "cpu"
    own, total = f"self_{timer}_time_total", f"{timer}_time_total"
    forward_parts: dict[int, str] = {}
    for event in events:  # forward ops: the part of their innermost label
        part = _enclosing_part(event)
        if event.sequence_nr >= 0 and part is not None and event.sequence_nr not in forward_parts:
            forward_parts[event.sequence_nr] = part
    seconds = dict.fromkeys(PARTS, 0.0)
    for event in events:
        if event.name.startswith(_BACKWARD_NODE):
            seconds[_backward_part(event, forward_parts)] += getattr(event, total) / 1e6
        elif not _inside_backward_node(event):
            part = _enclosing_part(event)
            if part is not None:
                seconds[part] += getattr(event, own) / 1e6
    return seconds


def _backward_part(event: Any, forward_parts: dict[int, str]) -> str:
    if event.name.endswith(_GRADIENT_STORE):
        return OPTIMIZER
    part = forward_parts.get(event.sequence_nr, FROZEN_FORWARD)
    return ACTIVATION_BACKWARD if part == FROZEN_FORWARD else part


def _enclosing_part(event: Any) -> str | None:
    while event is not None:
        if event.name.startswith(_LABEL):
            return event.name[len(_LABEL) :]
        event = event.cpu_parent
    return None


def _inside_backward_node(event: Any) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(_BACKWARD_NODE):
            return True
        parent = parent.cpu_parent
    return False


@contextlib.contextmanager
def _labelled_parts(objective: nn.Module) -> Iterator[None]:
    """Label every PUMA module's forward with its part, the frozen module it wraps with the frozen forward, the loss
    with the head and loss, the gate draws with the gates and the pool's regulariser with the pool; removed on
    exit."""
    handles: list[Any] = []

    def label(module: nn.Module, part: str) -> None:
        scopes: list[Any] = []
        handles.append(module.register_forward_pre_hook(lambda *_: scopes.append(_enter(part))))
        handles.append(module.register_forward_hook(lambda *_: scopes.pop().__exit__(None, None, None)))

    for module in objective.modules():
        for kind, part in _MODULE_PARTS:
            if isinstance(module, kind):
                label(module, part)
                label(module.base_layer, FROZEN_FORWARD)
    loss = getattr(objective, "loss", None) or getattr(getattr(objective, "module", None), "loss", None)
    if loss is not None:
        label(loss, HEAD_AND_LOSS)
    restore = [_label_method(StochasticAdapter, name, GATES) for name in ("gate", "kept_samples")]
    restore.append(_label_method(ConditionalPromptPool, "orthogonality_loss", PROMPT_POOL))  # its regulariser
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for undo in restore:
            undo()


def _enter(part: str) -> Any:
    scope = record_function(_LABEL + part)
    scope.__enter__()
    return scope


def _label_method(owner: type, name: str, part: str) -> Callable[[], None]:
    """Wrap ``owner.name`` in a labelled scope; returns what undoes it."""
    original = owner.__dict__[name]
    function = original.__func__ if isinstance(original, staticmethod) else original

    def labelled(*args: Any, **kwargs: Any) -> Any:
        with record_function(_LABEL + part):
            return function(*args, **kwargs)

    setattr(owner, name, staticmethod(labelled) if isinstance(original, staticmethod) else labelled)
    return lambda: setattr(owner, name, original)


def measure_breakdown(options: Any, names: tuple[str, ...], steps: int) -> dict[str, dict[str, float]]:
    """Each trained method's step split into parts: the median over ``steps`` profiled steps, after one unprofiled
    step (which allocates AdamW's state), at ``options.train_batch_size``."""
    from cost_models import make_batch, training_step

    runtime = options.runtime
    pixels, labels = make_batch(options.train_batch_size, options.image_size, options.num_classes, 2, runtime.device)
    result = {}
    for name, model in options.models(names).items():
        step = training_step(model, options.num_classes, runtime)
        step(pixels, labels)
        profiled = [step_breakdown(step, pixels, labels, runtime.device) for _ in range(steps)]
        result[name] = {part: float(torch.tensor([p[part] for p in profiled]).median()) for part in PARTS}
        del step, model
    return result


def breakdown_table(breakdown: dict[str, dict[str, float]], batch_size: int) -> list[str]:
    """The markdown table of docs/cost.md: milliseconds per part and step, each part's share of the step."""
    lines = [
        f"| method (batch {batch_size}) | " + " | ".join(PARTS) + " | profiled step |",
        "|---|" + "---|" * (len(PARTS) + 1),
    ]
    for name, parts in breakdown.items():
        step = sum(parts.values())
        cells = [f"{parts[part] * 1e3:.0f} ms ({parts[part] / step:.0%})" if parts[part] else "0" for part in PARTS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {step * 1e3:.0f} ms |")
    return lines
