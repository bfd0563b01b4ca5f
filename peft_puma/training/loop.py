"""The training run: set-up, the loop of docs/spec.md section 6, checkpoints, final evaluation and the saved adapter.

``train(config)`` is everything ``python -m peft_puma.train`` (or ``accelerate launch -m peft_puma.train``) does:

1. build the accelerator, the data, the backbone, the method's model and the loss, print a start-up summary;
2. resume from the newest complete checkpoint when asked (restoring weights, optimiser, schedule, RNG states and the
   position in the epoch, so the run ends exactly where an uninterrupted one would);
3. train: per step, embeddings of the global batch (gathered, local part differentiable), loss in fp32 plus the
   prompt pool's orthogonality regulariser, a stop on a non-finite loss, backward, element-wise gradient clamp,
   AdamW step and the step schedule; checkpoints every ``save_every_steps`` and at the end;
4. evaluate the final epoch on ``eval_split`` (the test split by default; model selection never looks at the test set),
   print the table row, save the adapter with its model card and ``results.json``.

Evaluations every ``eval_every_epochs`` score the validation split where the data has one (so that a learning curve
never reads the test split), else the test split (the paper's benchmarks have none). ``train_log.jsonl`` gets one JSON
line per logged step, one per completed epoch (its mean training loss) and one per evaluation (its split and epoch, and
the scores under ``eval/`` for the test split, ``validation/`` for the validation split); docs/training.md lists them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from torch import nn
from tqdm.auto import tqdm

from ..backbones.fingerprint import backbone_fingerprint
from ..backbones.loading import check_resolution, load_backbone
from ..cpu_threads import configure_torch_threads
from ..data.loader import make_train_loader
from ..data.schema import TEST_SPLIT, TRAIN_SPLIT, VALIDATION_SPLIT
from ..data.splits import SplitRecord
from ..data.transforms import make_eval_transform, make_train_transform
from ..data.unified import LoadedSource, dataset_sizes, load_source, scored_split
from ..errors import (
    ForeignContentError,
    IncompatibleCheckpointError,
    InterruptedRunError,
    InvalidConfigError,
    PUMAError,
)
from ..evaluation.examples import write_retrieval_examples
from ..evaluation.retrieval import KTooLargeError
from ..evaluation.scoring import check_split, score_split
from ..evaluation.table import results_markdown
from ..evaluation.test_reads import LEDGER_VARIABLE, TestReadNotRecordedError, check_test_reads, record_test_read
from ..inference.embedding import embed_split
from ..losses import make_loss
from ..owned_paths import write_failures_reported
from ..runs import checkpoints as ckpt
from ..runs.data_identity import data_identity
from ..runs.layout import (
    EXAMPLES_FILE,
    LOCK_FILE,
    LOGS,
    RESULTS_FILE,
    RUN_LAYOUT,
    TRAIN_LOG,
)
from ..runs.lock import lock_across_processes
from ..runs.run_file import write_run_file
from ..runs.same_run import RunIdentity, run_differences
from ..runs.saving import foreign_saved_entries
from ..runs.split_file import write_run_split
from .arguments import TrainingConfig, resolve_precision
from .methods import MethodOptions, build_model, compile_for_training
from .report import RunInfo, push_folder, run_record, start_up_summary, write_outputs
from .step import StepLosses, TrainingStep, build_training_step

logger = logging.getLogger(__name__)

# The prefix of an evaluation's scores in train_log.jsonl and the trackers, by split: `eval/` as it always was for the
# test split, so that what reads a run's final scores keeps working.
LOG_PREFIXES: dict[str, str] = {TEST_SPLIT: "eval", VALIDATION_SPLIT: "validation"}


class NonFiniteLossError(PUMAError):
    """The loss became NaN or infinite: the run stopped before the bad step changed any weight (exit status 3)."""

    exit_status = 3


class PushToHubError(PUMAError):
    """The run finished and its outputs are saved, but uploading them to the Hub failed."""


@dataclass
class TrainResult:
    """What a finished run produced."""

    output_dir: str
    results: dict[str, Any]
    global_step: int
    table: str
    model: nn.Module  # the trained PeftModel, in eval mode
    losses: list[float]  # the training loss of every step this call ran (after a resume: from the checkpoint on)
    split: str = TEST_SPLIT  # the split ``results`` scores (``eval_split``)


def make_accelerator(config: TrainingConfig) -> Accelerator:
    """The run's accelerator, in the precision :func:`~peft_puma.training.arguments.resolve_precision` chooses; the
    config then records what applied (``mixed_precision``: ``no``, ``fp16`` or ``bf16``, in the run file and the
    checkpoints), and the main process prints it with where it came from."""
    has_gpu = torch.cuda.is_available()
    precision = resolve_precision(config.mixed_precision)
    config.mixed_precision = precision.applied
    trackers = [name for name in config.report_to if name != "none"] or None
    accelerator = Accelerator(
        # Without cpu=True, accelerate treats a CPU-only torchrun / `accelerate launch --multi_gpu` as one process.
        cpu=not has_gpu,
        mixed_precision=precision.applied,
        log_with=trackers,
        # Full fine-tuning of a classifier backbone leaves its classification layer without gradient.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.method == "full_finetune")],
        project_config=ProjectConfiguration(
            project_dir=config.output_dir, logging_dir=os.path.join(config.output_dir, "logs")
        ),
    )
    accelerator.print(precision.line())
    return accelerator


def train(config: TrainingConfig) -> TrainResult:
    """Run the training described by ``config`` (validated here) and return where its outputs are."""
    config.validate()
    RUN_LAYOUT.is_owned(config.output_dir)  # a file, or a folder of someone else's files: refused, untouched
    if not config.resume and not config.overwrite_output_dir:
        _refuse_existing_run(config)  # before any model loads
    accelerator = make_accelerator(config)
    _set_cpu_threads(config, accelerator)
    os.makedirs(config.output_dir, exist_ok=True)
    lock = lock_across_processes(
        os.path.join(config.output_dir, LOCK_FILE), "another training run", accelerator, accelerator.print
    )
    try:
        if config.overwrite_output_dir:
            _start_afresh(config, accelerator)  # under the lock: no other run writes there meanwhile
        elif not config.resume:
            _refuse_existing_run(config)  # again under the lock: another run may have finished in the folder meanwhile
        return _run(config, accelerator)
    except KeyboardInterrupt:
        raise InterruptedRunError(_interrupted(config)) from None
    finally:
        lock.release()


def _run(config: TrainingConfig, accelerator: Any) -> TrainResult:
    set_seed(config.seed)
    run = _set_up(config, accelerator)
    start = _resume(config, accelerator, run) if config.resume else _Position()
    if accelerator.is_main_process:
        write_run_file(config.output_dir, run_record(config, run.info))
        write_run_split(config.output_dir, run.info.data_split)
        _trim_log(config, start.step)
    accelerator.print(start_up_summary(run.info))
    if accelerator.log_with:
        accelerator.init_trackers("peft_puma", config=_tracker_config(config))
    state = _train_loop(config, accelerator, run, start)
    return _finish(config, accelerator, run, state)


def _interrupted(config: TrainingConfig) -> str:
    """What an interrupted run kept, and how to continue it."""
    last = ckpt.complete_checkpoints(config.output_dir)
    if not last:
        return f"no checkpoint of {config.output_dir} was complete yet; start the run again (nothing to resume)."
    step, path = last[-1]
    return f"the newest complete checkpoint is {path} (step {step}); continue with --resume."


def _unrecorded(config: TrainingConfig, error: TestReadNotRecordedError) -> str:
    """What a run whose test read the ledger refused kept, and how to put a read on record."""
    return (
        f"{error} The run is complete and saved in {os.path.abspath(config.output_dir)} (adapter, results.json). To "
        f"put a test read on record, repair {LEDGER_VARIABLE} and run `python -m peft_puma.evaluate --adapter "
        f"{config.output_dir} --split {config.eval_split}` (a new read of that split)."
    )


# ------------------------------------------------------------------------------------------------------------ set-up
def _set_cpu_threads(config: TrainingConfig, accelerator: Any) -> None:
    if accelerator.device.type != "cpu":
        return
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    else:
        configure_torch_threads(int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))


@dataclass
class _EpochLoss:
    """The running sum of the training losses of the epoch in progress; checkpoints keep it, so that a run resumed
    within an epoch logs the same epoch mean as an uninterrupted one."""

    total: float = 0.0
    steps: int = 0

    def add(self, loss: float) -> None:
        self.total += loss
        self.steps += 1

    def state(self) -> dict[str, Any]:
        return {"total": self.total, "steps": self.steps}


@dataclass
class _Run:
    step: TrainingStep
    batches: Any
    data: Any
    eval_transform: Any
    info: RunInfo
    steps_per_epoch: int
    losses: list[float] = field(default_factory=list)
    epoch_loss: _EpochLoss = field(default_factory=_EpochLoss)
    unrecorded: TestReadNotRecordedError | None = None  # a test read the ledger refused: raised once all is saved
    data_identity: dict[str, str | None] | None = None  # runs/data_identity.py: what a resume compares beyond sizes

    @property
    def objective(self) -> nn.Module:
        return self.step.objective

    @property
    def total_steps(self) -> int:
        return self.info.total_steps


def _load_data(config: TrainingConfig, accelerator: Any) -> LoadedSource:
    """The run's data, read once in full: by the main process, which builds UML-mini and downloads Hub files, checks
    every image and draws the split; under several processes the others then take its split record and the files
    it found unreadable, so that none of them checks an image or draws a split again, and all hold the same rows."""
    with accelerator.main_process_first():
        source = load_source(config) if accelerator.is_main_process else None
    if accelerator.num_processes == 1:
        return source
    from accelerate.utils import broadcast_object_list  # only under several processes

    read = [source.split.to_dict() if source and source.split else None, source.unreadable if source else None]
    shared = broadcast_object_list([[*read, source.description if source else None]])[0]
    if accelerator.is_main_process:
        return source
    record = SplitRecord.from_dict(shared[0], "the main process's split") if shared[0] else None
    mine = load_source(config, record=record, unreadable=shared[1])
    return LoadedSource(mine.data, shared[2], record, shared[1])


def _set_up(config: TrainingConfig, accelerator: Any) -> _Run:
    source = _load_data(config, accelerator)
    data = source.data
    epoch_split = VALIDATION_SPLIT if VALIDATION_SPLIT in data else TEST_SPLIT
    # A ledger that cannot take a test read stops the run now, not after training (evaluation/test_reads.py).
    reads = [config.eval_split, *([epoch_split] if config.eval_every_epochs else [])]
    check_test_reads(reads, warn=accelerator.is_main_process)
    # A missing split, or eval_ks larger than a dataset's gallery, stops the run before the backbone loads.
    _check_eval_ks(scored_split(data, config.eval_split, "eval_split"), config, config.eval_split)
    if config.eval_every_epochs and VALIDATION_SPLIT in data:
        _check_eval_ks(data[VALIDATION_SPLIT], config, VALIDATION_SPLIT)
    with accelerator.main_process_first():
        backbone, processor = load_backbone(config.backbone, config.backbone_format)
    fingerprint = backbone_fingerprint(backbone)  # before the method adds its modules
    train_transform = make_train_transform(
        config.image_size,
        image_processor=processor,
        scale=tuple(config.crop_scale),
        hflip_probability=config.hflip_probability,
        seed=config.seed,
    )
    eval_transform = make_eval_transform(config.image_size, image_processor=processor)
    check_resolution(backbone, train_transform.image_size)
    batches = make_train_loader(
        data[TRAIN_SPLIT],
        train_transform,
        sampler=config.sampler,
        seed=config.seed,
        per_device_batch_size=config.per_device_batch_size,
        samples_per_class=config.samples_per_class,
        num_processes=accelerator.num_processes,
        process_index=accelerator.process_index,
        num_workers=config.num_workers,
    )
    model = build_model(
        config.method,
        backbone,
        MethodOptions.from_config(config),
        activation_checkpointing=config.activation_checkpointing,
    )
    if config.torch_compile:
        compile_for_training(model, config.torch_compile_backend, config.torch_compile_mode)
    embedding_size = model.peft_config["default"].embedding_size
    loss = make_loss(config.loss, num_classes=batches.num_classes, embedding_size=embedding_size, **config.loss_options)
    steps_per_epoch = batches.sampler.batches_per_epoch()
    step = build_training_step(model, loss, config, accelerator, steps_per_epoch)
    ckpt.register_trainable_state_hooks(accelerator, step.objective)
    total = config.epochs * steps_per_epoch
    info = RunInfo(
        config=config,
        backbone=backbone,
        image_size=train_transform.image_size,
        groups=step.groups,
        frozen=sum(p.numel() for p in model.parameters() if not p.requires_grad),
        sizes=dataset_sizes(data),
        data_source=source.description,
        data_split=source.split,
        num_processes=accelerator.num_processes,
        steps_per_epoch=steps_per_epoch,
        total_steps=min(total, config.max_steps or total),
        precision=accelerator.mixed_precision,
        device=str(accelerator.device),
        epoch_split=epoch_split,
        backbone_fingerprint=fingerprint,
        eval_transform=eval_transform,
        adapter_scale=getattr(model.peft_config["default"], "scale", None),
    )
    identity = data_identity(source.description, source.split)
    return _Run(step, batches, data, eval_transform, info, steps_per_epoch, data_identity=identity)


def _check_eval_ks(rows: Any, config: TrainingConfig, split: str) -> None:
    """The scored ``split``'s rows can be scored at every k of ``eval_ks``: a k larger than its smallest gallery is
    refused now, naming that gallery, its size and the ks that fit."""
    try:
        check_split(rows, config.eval_ks)
    except KTooLargeError as error:
        described = error.describe("eval_ks", config.eval_ks, split)
        raise InvalidConfigError(f"eval_ks {config.eval_ks}: {described}") from None


@dataclass
class _Position:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def _refuse_existing_run(config: TrainingConfig) -> None:
    """A fresh start must not mix its checkpoints with those of another run, nor overwrite a finished run unasked."""
    existing = ckpt.complete_checkpoints(config.output_dir)
    if existing:
        raise IncompatibleCheckpointError(
            f"{config.output_dir} already holds checkpoints (newest: {existing[-1][1]}); pass --resume to continue "
            "that run, --overwrite_output_dir to start afresh there (removing only what the trainer wrote), or "
            "choose another output_dir."
        )
    if os.path.isfile(os.path.join(config.output_dir, RESULTS_FILE)):
        raise IncompatibleCheckpointError(
            f"{config.output_dir} already holds a finished run ({RESULTS_FILE}); pass --overwrite_output_dir to "
            "train afresh there (removing only what the trainer wrote), or choose another output_dir."
        )


def _start_afresh(config: TrainingConfig, accelerator: Any) -> None:
    """``overwrite_output_dir``: remove what the trainer wrote in ``output_dir`` (its run layout's names; the lock
    this run holds stays), on the main process, under the lock. A folder holding anything else is refused untouched
    on every process (docs/safety.md: never delete what we did not write)."""
    refusal, removed = "", []
    if accelerator.is_main_process:
        try:
            inside = ckpt.foreign_entries(config.output_dir) + foreign_saved_entries(config.output_dir)
            if inside:
                raise ForeignContentError(
                    f"{config.output_dir} holds a peft_puma training run and, inside its folders, files peft_puma did "
                    f"not write ({', '.join(inside[:5])}{', ...' if len(inside) > 5 else ''}). Nothing was touched: "
                    "move them out or choose another folder."
                )
            # logs/ stays: trackers append new event files there, and a user's notes there are theirs.
            removed = RUN_LAYOUT.clear(config.output_dir, keep=(LOCK_FILE, LOGS))
        except ForeignContentError as error:
            refusal = str(error)
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list  # only under several processes

        refusal = broadcast_object_list([refusal])[0]
    if refusal:
        raise ForeignContentError(refusal)
    if removed:
        accelerator.print(
            f"overwrite_output_dir: removed the earlier run's {', '.join(removed)} from {config.output_dir}; "
            "starting afresh."
        )


def _trim_log(config: TrainingConfig, step: int) -> None:
    """Keep the lines of ``train_log.jsonl`` up to ``step``: a resumed run logs the later steps again."""
    path = os.path.join(config.output_dir, TRAIN_LOG)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as handle:
        lines = handle.readlines()
    kept = [line for line in lines if _logged_step(line) <= step]
    if len(kept) < len(lines):
        with open(path, "w", encoding="utf-8") as handle:
            handle.writelines(kept)


def _logged_step(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")  # a line cut by a crash


def _resume(config: TrainingConfig, accelerator: Any, run: _Run) -> _Position:
    if accelerator.is_main_process:
        removed = ckpt.remove_partial_checkpoints(config.output_dir)
        if removed:
            accelerator.print(f"Removed checkpoint(s) interrupted while being written: {', '.join(removed)}")
    accelerator.wait_for_everyone()
    if isinstance(config.resume, str):
        candidates = [config.resume]  # the user's choice: no fall-back to another checkpoint
    else:
        candidates = [path for _, path in reversed(ckpt.complete_checkpoints(config.output_dir))]
        if not candidates:
            accelerator.print(f"--resume: no complete checkpoint in {config.output_dir}/checkpoints; starting afresh.")
            return _Position()
    for index, path in enumerate(candidates):
        try:
            state = ckpt.read_trainer_state(path)
            if state.get("num_processes", accelerator.num_processes) != accelerator.num_processes:
                raise IncompatibleCheckpointError(
                    f"The checkpoint {path} was written by {state['num_processes']} process(es), this run has "
                    f"{accelerator.num_processes}: the global batch, hence the data order, would change. Resume with "
                    "the same number of processes."
                )
            _check_same_run(config, state, path, run)
            ckpt.load_checkpoint(accelerator, path)
            # Checkpoints written before the epoch's loss was kept: the mean covers the steps run after the resume.
            run.epoch_loss = _EpochLoss(**state.get("epoch_loss", {}))
        except ckpt.CorruptCheckpointError as error:
            if index + 1 == len(candidates):
                raise
            accelerator.print(f"{error} Falling back to the previous complete checkpoint, {candidates[index + 1]}.")
            continue
        accelerator.print(f"Resumed from {path}: {_progress(state, run)}.")
        return _Position(state["step"], state["epoch"], state["batch_in_epoch"])
    raise AssertionError("unreachable: the loop returns or raises")


def _progress(state: dict[str, Any], run: _Run) -> str:
    if state["step"] >= run.total_steps:
        return f"step {state['step']}, the run had finished all its {run.total_steps} steps"
    return f"step {state['step']} of {run.total_steps}, epoch {state['epoch'] + 1} batch {state['batch_in_epoch'] + 1}"


def _check_same_run(config: TrainingConfig, state: dict[str, Any], path: str, run: _Run) -> None:
    """The checkpoint must be of this run (the rule of :mod:`peft_puma.runs.same_run`; its length may change)."""
    processes = state.get("num_processes", run.info.num_processes)
    saved = RunIdentity(
        state.get("config", {}),
        processes,
        state.get("data_sizes"),
        state.get("backbone_fingerprint"),
        state.get("data_identity"),
    )
    wanted = RunIdentity(
        config.to_dict(), run.info.num_processes, run.info.sizes, run.info.backbone_fingerprint, run.data_identity
    )
    changed = run_differences(saved, wanted, TrainingConfig.key_roles(), finished=False)
    if changed:
        details = ", ".join(f"{d.key}: {d.saved!r} -> {d.wanted!r}" for d in changed[:5])
        raise IncompatibleCheckpointError(
            f"The checkpoint {path} was written by a run with other settings ({details}); resuming would not continue "
            "that run. Restore those settings or start a new output_dir."
        )


# -------------------------------------------------------------------------------------------------------------- loop
def _train_loop(config: TrainingConfig, accelerator: Any, run: _Run, position: _Position) -> _Position:
    progress = tqdm(
        total=run.total_steps,
        initial=position.step,
        desc="training",
        unit="step",
        disable=not (config.progress_bar and accelerator.is_local_main_process),
    )
    run.objective.train()
    global_batch = config.global_batch(accelerator.num_processes)
    window_start, window_steps, images_per_second = time.perf_counter(), 0, 0.0
    while position.step < run.total_steps:
        run.batches.sampler.set_position(position.epoch, position.batch_in_epoch)
        for batch in run.batches.loader:
            pixel_values = batch["pixel_values"].to(accelerator.device)
            labels = batch["labels"].to(accelerator.device)
            losses = run.step.forward(pixel_values, labels)
            _stop_if_not_finite(losses.total, accelerator, config, position)
            run.step.update(losses)
            run.losses.append(losses.total.item())
            run.epoch_loss.add(run.losses[-1])
            progress.set_postfix(
                loss=f"{run.losses[-1]:.4f}", img_s=f"{images_per_second:.0f}", epoch=position.epoch + 1
            )
            position.step += 1
            position.batch_in_epoch += 1
            window_steps += 1
            if position.batch_in_epoch == run.steps_per_epoch:
                position.epoch, position.batch_in_epoch = position.epoch + 1, 0
            images_per_second = window_steps * global_batch / max(time.perf_counter() - window_start, 1e-9)
            progress.update(1)
            if position.step % config.log_every_steps == 0:
                _log_step(config, accelerator, run.step.optimizer, position.step, losses, images_per_second)
                window_start, window_steps = time.perf_counter(), 0
            if position.batch_in_epoch == 0:
                _log_epoch_loss(config, accelerator, run, position)
                # before a checkpoint of this step: a run stopped during the evaluation resumes before it and
                # evaluates again, so no point of the learning curve is lost (the evaluation draws no random number)
                _maybe_evaluate_epoch(config, accelerator, run, position)
            if config.save_every_steps and position.step % config.save_every_steps == 0:
                _save(config, accelerator, run, position)
            if position.step >= run.total_steps:
                break
    progress.close()
    if not config.save_every_steps or position.step % config.save_every_steps:
        _save(config, accelerator, run, position)
    return position


def _stop_if_not_finite(loss: torch.Tensor, accelerator: Any, config: TrainingConfig, position: _Position) -> None:
    bad = (~torch.isfinite(loss.detach())).float().reshape(1)
    if accelerator.num_processes > 1:
        bad = accelerator.gather(bad).max().reshape(1)  # every process must stop together
    if bad.item() == 0:
        return
    last = ckpt.latest_checkpoint(config.output_dir)
    kept = f"The last good checkpoint is {last}" if last else "No checkpoint had been written yet"
    raise NonFiniteLossError(
        f"The loss became {loss.item()} at step {position.step + 1} (epoch {position.epoch + 1}); training stopped "
        f"before that step changed any weight. {kept}. Try a lower learning_rate or lr_multipliers, or "
        "mixed_precision: no; `--resume` continues from the last checkpoint."
    )


def _log_step(
    config: TrainingConfig, accelerator: Any, optimizer: Any, step: int, losses: StepLosses, images_per_second: float
) -> None:
    """To the trackers, and as one JSON line of ``train_log.jsonl`` (main process) for scripts and tests."""
    values = {
        "train/loss": losses.total.item(),
        "train/metric_loss": losses.metric.item(),
        "train/regularization": losses.regulariser.item(),
        "train/images_per_second": images_per_second,
    }
    values.update({f"lr/{group['name']}": group["lr"] for group in optimizer.param_groups})
    if accelerator.trackers:
        accelerator.log(values, step=step)
    _append_log(config, accelerator, {"step": step, **values})


def _log_epoch_loss(config: TrainingConfig, accelerator: Any, run: _Run, position: _Position) -> None:
    """The mean training loss of the epoch just completed, so that a learning curve can be drawn from the log alone;
    then a fresh sum for the next epoch."""
    mean = run.epoch_loss.total / max(run.epoch_loss.steps, 1)
    if accelerator.trackers:
        accelerator.log({"train/epoch_loss": mean}, step=position.step)
    _append_log(config, accelerator, {"epoch": position.epoch, "step": position.step, "train/epoch_loss": mean})
    run.epoch_loss = _EpochLoss()


def _save(config: TrainingConfig, accelerator: Any, run: _Run, position: _Position) -> None:
    state = {
        "step": position.step,
        "epoch": position.epoch,
        "batch_in_epoch": position.batch_in_epoch,
        "num_processes": accelerator.num_processes,
        "config": config.to_dict(),
        "data_sizes": run.info.sizes,  # a resume checks that it continues on the same data
        "backbone_fingerprint": run.info.backbone_fingerprint,  # ... and on the same frozen weights
        "data_identity": run.data_identity,  # ... and on the same classes and files, not only as many
        "epoch_loss": run.epoch_loss.state(),  # the epoch in progress, for its mean in train_log.jsonl
    }
    ckpt.save_checkpoint(accelerator, config.output_dir, position.step, state, config.save_total_limit)


def _maybe_evaluate_epoch(config: TrainingConfig, accelerator: Any, run: _Run, position: _Position) -> None:
    every, split = config.eval_every_epochs, run.info.epoch_split
    if not every or position.epoch % every:
        return
    if position.step >= run.total_steps and split == config.eval_split:
        return  # _finish scores this split at the end
    result = _evaluate(config, accelerator, run, split)
    accelerator.print(results_markdown(result, f"Epoch {position.epoch} evaluation ({split} split)"))
    _log_eval(config, accelerator, result, split, position)
    run.objective.train()


def _evaluate(
    config: TrainingConfig, accelerator: Any, run: _Run, split: str, examples: str | None = None
) -> dict[str, Any]:
    """Scores of ``split`` (test or validation); with ``examples``, also the retrieval examples sheet of its rows there
    (main process)."""
    model = accelerator.unwrap_model(run.objective).model
    rows = run.data[split]
    embeddings = embed_split(
        model,
        rows,
        run.eval_transform,
        batch_size=config.eval_batch_size,
        accelerator=accelerator,
        progress=config.progress_bar,
        description=f"evaluating ({split})",
    )
    if examples and accelerator.is_main_process:
        write_retrieval_examples(examples, {config.method: embeddings}, rows, seed=config.seed)
    result = score_split(embeddings, rows, config.eval_ks)
    if accelerator.is_main_process:
        try:
            record_test_read(
                split,
                f"training {config.method}: the final evaluation" if examples else "training: a per-epoch evaluation",
                result,
                data_source=run.info.data_source,
                config=config.to_dict(),
                backbone=config.backbone,
                backbone_fingerprint=run.info.backbone_fingerprint,
                adapter=os.path.abspath(config.output_dir),
            )
        except TestReadNotRecordedError as error:
            run.unrecorded = run.unrecorded or error  # the run goes on and saves its adapter first (_finish)
    return result


def _log_eval(
    config: TrainingConfig, accelerator: Any, result: dict[str, Any], split: str, position: _Position
) -> None:
    """Evaluation results to the trackers and to ``train_log.jsonl``, with the split and the epochs completed."""
    prefix = LOG_PREFIXES[split]
    values = {f"{prefix}/unified/{k}": v for k, v in result["unified"].items() if isinstance(v, float)}
    values.update({f"{prefix}/harmonic/{k}": v for k, v in result.get("harmonic", {}).items() if isinstance(v, float)})
    for name, scores in result.get("per_dataset", {}).items():
        values[f"{prefix}/{name}/recall@1"] = scores["recall@1"]
    if accelerator.trackers:
        accelerator.log(values, step=position.step)
    _append_log(config, accelerator, {"step": position.step, "epoch": position.epoch, "split": split, **values})


def _append_log(config: TrainingConfig, accelerator: Any, values: dict[str, Any]) -> None:
    if accelerator.is_main_process:
        with open(os.path.join(config.output_dir, TRAIN_LOG), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(values) + "\n")


# ------------------------------------------------------------------------------------------------------------ finish
def _finish(config: TrainingConfig, accelerator: Any, run: _Run, position: _Position) -> TrainResult:
    examples = os.path.join(config.output_dir, EXAMPLES_FILE)
    result = _evaluate(config, accelerator, run, config.eval_split, examples=examples)
    table = results_markdown(result, f"Results of the final epoch ({config.eval_split} split)")
    _log_eval(config, accelerator, result, config.eval_split, position)
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(run.objective).model
        _write_outputs(config, model, result, table, run.info)
        accelerator.print(
            f"\n{table}\n\nRetrieval examples: {os.path.abspath(examples)}\n"
            f"Adapter saved to {os.path.abspath(config.output_dir)}"
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if config.push_to_hub and accelerator.is_main_process:
        _push(config)
    if run.unrecorded is not None:  # main process, after the others are done: nothing waits on it
        raise TestReadNotRecordedError(_unrecorded(config, run.unrecorded))
    model = accelerator.unwrap_model(run.objective).model.eval()
    return TrainResult(config.output_dir, result, position.step, table, model, run.losses, config.eval_split)


def _write_outputs(config: TrainingConfig, model: nn.Module, result: dict[str, Any], table: str, info: RunInfo) -> None:
    """The adapter, its card, ``results.json`` and the run file; a full disk or an unwritable folder is one line that
    says the last checkpoint is intact (it holds the final step) and how to save again."""
    with write_failures_reported(
        f"Saving the trained adapter in {config.output_dir}",
        config.output_dir,
        kept=lambda: (
            f"the final checkpoint {ckpt.latest_checkpoint(config.output_dir)} is intact: free some space and "
            "run the same command with --resume to evaluate and save it again."
        ),
    ):
        write_outputs(config, model, result, table, info)


def _push(config: TrainingConfig) -> None:
    """Upload the saved run; any failure (offline, no token, no rights) leaves everything saved and says so."""
    try:
        url = push_folder(config.output_dir, config.hub_model_id, private=config.hub_private_repo)
    except Exception as error:  # huggingface_hub raises HTTP, connection, auth and validation errors alike
        reason = (str(error).splitlines() or [""])[0]
        again = f"push_folder({config.output_dir!r}, {config.hub_model_id!r}, private={config.hub_private_repo})"
        raise PushToHubError(
            f"The run is saved in {os.path.abspath(config.output_dir)}, but pushing it to the Hub repository "
            f"{config.hub_model_id!r} failed ({type(error).__name__}: {reason}). Upload it later with "
            f'`python -c "from peft_puma.training.report import push_folder; {again}"` (it uploads a copy without '
            "local paths, checkpoints and logs)."
        ) from None
    print(f"Pushed to {url}")


def _tracker_config(config: TrainingConfig) -> dict[str, Any]:
    """Hyper-parameters as the scalar/str values every tracker accepts."""
    flat = {}
    for key, value in config.to_dict().items():
        flat[key] = value if isinstance(value, int | float | str | bool) else json.dumps(value)
    return flat
