"""Test-only fault injection for the training loop, by monkeypatching real seams of ``peft_puma`` (never env vars).

In-process tests use the context managers with pytest's ``monkeypatch``::

    with nan_loss_at_step(monkeypatch, 7):
        train(config)  # raises NonFiniteLossError at step 7

Subprocess tests run a training process with the faults applied in the child, then ``peft_puma.train.main``::

    python tests/training/fault_runner.py exit_after_step:10 --config run.yaml

Fault kinds (``kind:K``, comma-separated for several; steps counted from 1 within the process, i.e. of a fresh run):

- ``nan_at_step:K``: the metric loss of step ``K`` becomes NaN (``RetrievalObjective.forward`` wrapped);
- ``exit_after_step:K``: hard exit (``os._exit``, no cleanup, like a kill) once step ``K`` is done, its checkpoint
  and evaluation included: at the start of the forward of step ``K + 1``;
- ``exit_in_save:K``: hard exit in the middle of writing the checkpoint of step ``K``: every file is in the staging
  folder, the completion marker is not written and nothing is renamed into place (``checkpoint._write_json`` of the
  marker wrapped);
- ``exit_before_step:K``: hard exit just before the forward of step ``K`` (``K = 1``: at the end of the start-up);
- ``exit_mid_step:K``: hard exit between the forward and the update of step ``K``;
- ``exit_in_final_eval:1``: hard exit while the final evaluation embeds its split;
- ``exit_in_final_save:1``: hard exit once the adapter is written and before the card, results and run file are;
- ``interrupt_*``: the same moments as ``exit_*``, with Ctrl-C (``KeyboardInterrupt``) instead of a kill.

A process cut short on purpose exits with :data:`EXIT_CODE`; an interrupted one as the command says (130).
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXIT_CODE = 86  # what a test sees from a run that was cut short on purpose
PHASES = ("before_step", "mid_step", "in_save", "in_final_eval", "in_final_save")
KINDS = ("nan_at_step", "exit_after_step", *(f"{how}_{phase}" for how in ("exit", "interrupt") for phase in PHASES))


class _Patcher:
    """A plain, permanent ``setattr``: what a child process uses where tests use pytest's ``monkeypatch``."""

    def setattr(self, target: Any, name: str, value: Any) -> None:
        setattr(target, name, value)


def parse_spec(spec: str) -> dict[str, int]:
    """``"kind:K,kind:K"`` -> ``{kind: K}``; an unknown kind or a bad step is an error (a typo must not pass)."""
    faults = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        kind, _, step = entry.partition(":")
        if kind not in KINDS or not step.isdigit() or int(step) < 1:
            raise ValueError(f"Bad fault {entry!r}: expected kind:K with kind in {KINDS} and K >= 1.")
        faults[kind] = int(step)
    return faults


def _on_forward_call(patcher: Any, hook: Callable[[Any, int, tuple], tuple | None]) -> None:
    """Wrap ``RetrievalObjective.forward`` (one call per training step; evaluation calls the model, not it).

    ``hook(objective, step, outputs_or_None)`` is called before the forward (outputs ``None``) and after it; a
    returned tuple replaces the outputs. Steps are counted per objective, so from 1 in every ``train`` call.
    """
    from peft_puma.training.step import RetrievalObjective

    original = RetrievalObjective.forward
    calls: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def forward(self, pixel_values, labels):
        calls[self] = step = calls.get(self, 0) + 1
        hook(self, step, None)
        outputs = original(self, pixel_values, labels)
        return hook(self, step, outputs) or outputs

    patcher.setattr(RetrievalObjective, "forward", forward)


def _stop(how: str) -> None:
    if how == "exit":
        os._exit(EXIT_CODE)  # no cleanup at all, like kill -9
    raise KeyboardInterrupt  # what Ctrl-C raises in the main thread


def _cut(faults: dict[str, int], phase: str) -> tuple[str, int] | None:
    """``(how, K)`` of the fault at ``phase``, if one was asked for (``exit_in_save:K`` or ``interrupt_in_save:K``)."""
    for how in ("exit", "interrupt"):
        if f"{how}_{phase}" in faults:
            return how, faults[f"{how}_{phase}"]
    return None


def apply(patcher: Any, faults: dict[str, int]) -> None:
    """Install ``faults`` (see :func:`parse_spec`) with ``patcher.setattr`` (``monkeypatch`` or a plain one)."""
    nan_step, exit_step = faults.get("nan_at_step"), faults.get("exit_after_step")
    before, mid = _cut(faults, "before_step"), _cut(faults, "mid_step")
    if nan_step is not None or exit_step is not None or before or mid:

        def hook(objective, step, outputs):
            if outputs is None:
                if exit_step is not None and step == exit_step + 1:
                    os._exit(EXIT_CODE)
                if before and step == before[1]:
                    _stop(before[0])
                return None
            if mid and step == mid[1]:
                _stop(mid[0])
            if step == nan_step:
                metric_loss, regulariser = outputs
                return metric_loss * float("nan"), regulariser
            return None

        _on_forward_call(patcher, hook)
    in_save = _cut(faults, "in_save") or (("exit", faults["exit_in_save"]) if "exit_in_save" in faults else None)
    if in_save:
        from peft_puma.runs import checkpoints as checkpoint

        original_write_json = checkpoint._write_json
        staging = f".checkpoint-{in_save[1]}.tmp"

        def write_json(path: str, value: Any) -> None:
            folder, name = os.path.split(path)
            if name == checkpoint.MARKER and os.path.basename(folder) == staging:
                _stop(in_save[0])  # the checkpoint's files are written; marker and rename never happen
            original_write_json(path, value)

        patcher.setattr(checkpoint, "_write_json", write_json)
    final_eval = _cut(faults, "in_final_eval")
    if final_eval:
        from peft_puma.training import loop

        original_evaluate = loop._evaluate

        def evaluate(config, accelerator, run, split, examples=None):
            if examples is not None:  # only the final evaluation writes the examples sheet
                _stop(final_eval[0])
            return original_evaluate(config, accelerator, run, split, examples)

        patcher.setattr(loop, "_evaluate", evaluate)
    final_save = _cut(faults, "in_final_save")
    if final_save:
        from peft_puma.training import report

        original_save = report.save_trained

        def save_trained(*args: Any, **kwargs: Any) -> None:
            original_save(*args, **kwargs)
            _stop(final_save[0])  # the adapter is written; card, results.json and the run file are not

        patcher.setattr(report, "save_trained", save_trained)


@contextlib.contextmanager
def nan_loss_at_step(monkeypatch: Any, step: int) -> Iterator[None]:
    """In-process: within the block, the loss of step ``step`` of every ``train`` call becomes NaN."""
    with monkeypatch.context() as patch:
        apply(patch, {"nan_at_step": step})
        yield


def command(spec: str, *train_args: str) -> list[str]:
    """The command line that trains with ``train_args`` under the faults of ``spec`` (run from the repository root)."""
    return [sys.executable, os.path.join(REPO, "tests", "training", "fault_runner.py"), spec, *train_args]


def main(argv: Sequence[str]) -> int:
    if not argv:
        print("usage: python tests/training/fault_runner.py KIND:K[,KIND:K] [train arguments...]", file=sys.stderr)
        return 2
    faults = parse_spec(argv[0])
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [REPO] + [p for p in sys.path if os.path.abspath(p or ".") not in (here, REPO)]
    from peft_puma import train

    apply(_Patcher(), faults)
    return train.main(list(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
