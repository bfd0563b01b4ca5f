"""Peak memory of each method in a process of its own: Linux ``/proc`` probes on a CPU, the allocator on a GPU.

On a CPU every method runs in a fresh process forked from a ``forkserver`` that has only imported modules, so that the
heap another method left behind neither hides nor inflates the rise. Each probe process builds its own accelerator,
which is why one accelerate configuration per process is no constraint here. On a GPU the allocator's statistics are
exact, and the methods are probed one after the other in the benchmark's own process.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from cost_models import MB, BackboneShape, Runtime, build_method, make_batch, training_step
from cost_records import MemoryProbe
from cost_timing import inference_task

MMAP_THRESHOLD = 128 * 1024  # bytes; see memory_by_method


@dataclass(frozen=True)
class ProbeSettings:
    """What one probe process builds and runs (picklable: it crosses into the probe process)."""

    shape: BackboneShape
    runtime: Runtime
    image_size: int
    infer_batch_size: int
    train_batch_size: int
    num_classes: int
    memory_steps: int
    threads: int
    method: str = "frozen"


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM, and getrusage's ru_maxrss) to the current RSS."""
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as handle:
        handle.write("5")


def peak_rise_mb(work: Callable[[], Any], runtime: Runtime) -> float:
    """MB by which the peak during ``work`` exceeds the memory in use just before it: the process's resident set on
    a CPU, the caching allocator's allocated bytes on a GPU."""
    if runtime.is_cuda:
        runtime.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        work()
        runtime.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / MB
    _reset_peak_rss()
    before = _proc_status_kib("VmRSS")
    work()
    # The kernel updates VmRSS and VmHWM from per-thread counters with a small lag: a rise of zero can read as a few
    # hundred KB below zero.
    return max(0.0, (_proc_status_kib("VmHWM") - before) * 1024 / MB)


def _in_use_mb(runtime: Runtime) -> float:
    return torch.cuda.memory_allocated() / MB if runtime.is_cuda else _proc_status_kib("VmRSS") * 1024 / MB


def _peak_mb(runtime: Runtime) -> float:
    return torch.cuda.max_memory_allocated() / MB if runtime.is_cuda else _proc_status_kib("VmHWM") * 1024 / MB


def probe_memory(settings: ProbeSettings) -> MemoryProbe:
    """Peak memory of one method.

    After the model and the batch exist and one inference batch has set up the math libraries, the peak counter is
    reset; the rise of the peak over the memory in use at that moment is what inference (two batches) adds. Then the
    trainer's step is built (loss, optimiser, accelerator), the counter is reset again, and the rise during
    ``memory_steps`` training steps (the first of which allocates AdamW's state) is what training adds: activations
    kept for backward, gradients, optimiser state, temporaries.
    """
    torch.set_num_threads(settings.threads)
    runtime = settings.runtime
    model = build_method(settings.method, settings.shape.vit(settings.image_size), runtime.device)
    infer_pixels, _ = make_batch(settings.infer_batch_size, settings.image_size, 1, 1, runtime.device)
    infer = inference_task(model, infer_pixels, runtime)
    infer()  # one-time set-up of the math libraries (oneDNN/MKL buffers) is not the model's inference cost
    at_rest = _in_use_mb(runtime)
    infer_peak = peak_rise_mb(lambda: (infer(), infer()), runtime)
    if settings.method == "frozen":  # the zero-shot backbone is not trained
        return MemoryProbe(rss_at_rest_mb=at_rest, infer_peak_mb=infer_peak)
    step = training_step(model, settings.num_classes, runtime)
    pixels, labels = make_batch(settings.train_batch_size, settings.image_size, settings.num_classes, 2, runtime.device)
    train_peak = peak_rise_mb(lambda: [step(pixels, labels) for _ in range(settings.memory_steps)], runtime)
    return MemoryProbe(at_rest, infer_peak, train_peak_mb=train_peak, train_peak_rss_mb=_peak_mb(runtime))


def memory_by_method(names: Sequence[str], settings: ProbeSettings) -> dict[str, MemoryProbe]:
    """:func:`probe_memory` for every method: on a CPU each in a fresh process of a forkserver that has the imports
    done, on a GPU in this process, one method after the other."""
    if settings.runtime.is_cuda:
        results = {name: probe_memory(dataclasses.replace(settings, method=name)) for name in names}
        torch.cuda.empty_cache()
        return results
    # glibc raises its mmap threshold each time a large block is freed, after which freed tensors stay in the heap and
    # the peak RSS depends on what ran before (measured: +-100 MB between identical runs). A fixed threshold gives every
    # tensor of 128 KiB or more its own mapping, returned on free, so the RSS follows the live tensors (reproducible to
    # 1 MB). Set in the environment the forkserver, and so every probe process, starts with.
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["torch", "transformers", "peft", "accelerate", "peft_puma.training", "peft_puma.losses", "cost_memory"]
    )
    results = {}
    for name in names:
        with context.Pool(1, maxtasksperchild=1) as pool:
            results[name] = pool.apply(probe_memory, (dataclasses.replace(settings, method=name),))
    return results


def malloc_setting() -> str:
    """The allocator setting the CPU probes run with, for the result's settings."""
    return f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', MMAP_THRESHOLD)}"
