"""What a user sees and keeps from a run: the start-up summary, and the saved adapter with its card and results.

The output folder holds the adapter as PEFT saves it (``adapter_config.json``, ``adapter_model.safetensors``,
``README.md`` model card with the results table), ``lora/`` or ``backbone/`` for the baselines that train them,
``results.json`` (the mapping of :func:`peft_puma.evaluation.evaluate_retrieval` for the final epoch, with the
``split`` it scores, ``eval_split``) and
the run file ``peft_puma_training.json`` (:mod:`peft_puma.inference.run_file`: the method, the backbone, the whole
config, the number of processes and the images and classes per dataset, so that ``peft_puma.evaluate`` and
``peft_puma.embed`` can rebuild the model from the folder alone, and ``benchmarks/accuracy.py --reuse_finished`` can
tell which recipe and data a finished run had). This module says what goes into it (:func:`run_record`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from huggingface_hub import HfApi
from torch import nn

from ..backbones.loading import looks_local
from ..data.image_processor import PUMAImageProcessor
from ..data.schema import SPLITS
from ..data.splits import SplitRecord
from ..owned_paths import write_json_atomically
from ..runs.layout import CHECKPOINTS, EXAMPLES_FILE, LOCK_FILE, LOGS, RESULTS_FILE, RUN_FILE
from ..runs.results_file import results_record
from ..runs.run_file import RunRecord, write_run_file
from ..runs.saving import save_trained
from ..tuners.puma.hub import prepare_for_upload
from ..tuners.puma.model_card import CardResults, is_local_path, update_model_card


@dataclass
class RunInfo:
    """The facts the start-up summary and the model card report."""

    config: Any
    backbone: nn.Module
    image_size: int
    groups: dict[str, int]  # trainable parameters per learning-rate group
    frozen: int
    sizes: dict[str, dict[str, int]]
    data_source: dict[str, Any]  # where the data came from; for UML-mini its seed, scale and builder version
    num_processes: int
    steps_per_epoch: int
    total_steps: int
    precision: str
    device: str
    epoch_split: str  # what evaluations every eval_every_epochs score: validation where the data has it, else test
    backbone_fingerprint: str | None = None  # of the frozen weights as loaded (peft_puma.backbones.fingerprint)
    data_split: SplitRecord | None = None  # the class split of a collection without splits (runs/split_file.py)
    eval_transform: Any = None  # the transform the results were scored with; saved as the run's image processor
    adapter_scale: float | None = None  # PUMAConfig.scale of the trained adapter (None: not a PUMA adapter config)

    @property
    def saved_parameters(self) -> int:
        """Trainable parameters of the saved adapter: everything but the loss proxies."""
        return sum(count for name, count in self.groups.items() if name != "proxies")


def start_up_summary(info: RunInfo) -> str:
    """A short account of the run before it starts: backbone, method and sizes, data, the splits its evaluations score,
    augmentation, batch and schedule."""
    config, backbone = info.config, info.backbone
    model_config = backbone.config
    groups = ", ".join(f"{name} {count:,}" for name, count in info.groups.items())
    global_batch = config.global_batch(info.num_processes)
    every = config.eval_every_epochs
    per_epoch = f"; every {every} epoch(s) on the {info.epoch_split} split" if every else ""
    lines = [
        "peft_puma training",
        f"  backbone    {config.backbone} ({type(backbone).__name__}, hidden {model_config.hidden_size}, "
        f"{model_config.num_hidden_layers} layers, {info.image_size} px), frozen {info.frozen:,} parameters",
        f"  method      {config.method}: {info.saved_parameters:,} trainable parameters saved in the adapter",
        f"              by group: {groups}",
        f"  loss        {config.loss}" + (f" {config.loss_options}" if config.loss_options else ""),
        f"  data        {_source(info.data_source)}",
        *_sizes_table(info.sizes),
        f"  evaluation  final epoch on the {config.eval_split} split{per_epoch}",
        f"  augment     random resized crop, area {config.crop_scale[0]:g}-{config.crop_scale[1]:g}; horizontal flip, "
        f"p {config.hflip_probability:g}",
        f"  batch       {config.per_device_batch_size} per process x {info.num_processes} process(es) = "
        f"{global_batch} (gathered for the loss), sampler {config.sampler}",
        f"  schedule    {info.steps_per_epoch} steps/epoch, {config.epochs} epochs, {info.total_steps} steps; "
        f"lr {config.learning_rate:g} x {_multipliers(info)}, x{config.lr_gamma:g} every {config.lr_step_epochs} "
        f"epochs; clamp {config.grad_clamp}",
        f"  precision   {info.precision} on {info.device} ({torch.get_num_threads()} CPU threads), seed {config.seed}"
        + (", activation checkpointing" if config.activation_checkpointing else ""),
        f"  output      {os.path.abspath(config.output_dir)}",
    ]
    return "\n".join(lines)


def _sizes_table(sizes: dict[str, dict[str, int]]) -> list[str]:
    """Images / classes per dataset and split (train, validation where the data has it, test), then the totals."""
    first = next(iter(sizes.values()))
    splits = [split for split in SPLITS if f"{split}_images" in first]
    total = {key: sum(size[key] for size in sizes.values()) for key in first}
    indent = " " * 14
    header = "".join(f"{split + ' images':>17} / {'classes':<10}" for split in splits)
    lines = [indent + f"{'dataset':<12}" + header.rstrip()]
    for name, size in [*sizes.items(), ("total", total)]:
        cells = "".join(f"{size[f'{split}_images']:>17} / {size[f'{split}_classes']:<10}" for split in splits)
        lines.append(indent + f"{name:<12}" + cells.rstrip())
    return lines


def _source(source: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in source.items())


def _multipliers(info: RunInfo) -> str:
    return ", ".join(f"{name} {info.config.lr_multipliers[name]:g}" for name in info.groups)


def write_outputs(config: Any, model: nn.Module, result: dict[str, Any], table: str, info: RunInfo) -> None:
    """Save the adapter (``save_pretrained``) with its image processor and model card, ``results.json`` and the run
    file."""
    directory = config.output_dir
    save_trained(model, directory)
    if info.eval_transform is not None:
        transform = info.eval_transform
        PUMAImageProcessor(
            transform.image_size, transform.mean.flatten().tolist(), transform.std.flatten().tolist()
        ).save_pretrained(directory)
    card = "\n".join(
        [
            "### Training (peft_puma)",
            "",
            f"- method: `{config.method}`, loss: `{config.loss}`, {_length(config, info)}, global batch "
            f"{config.global_batch(info.num_processes)}, seed {config.seed}",
            f"- trained parameters (adapter): {info.saved_parameters:,}",
            f"- datasets: {', '.join(info.sizes)} ({_source(public_description(info.data_source))})",
            "- model selection: the final epoch (never a test-set pick)",
            f"- results: the {config.eval_split} split",
            "",
            "### Results",
            "",
            table,
            "",
            f"Retrieval examples (seeded {config.eval_split} queries per dataset and their top 5 in the unified "
            f"gallery; green: same class): [{EXAMPLES_FILE}]({EXAMPLES_FILE})",
        ]
    )
    update_model_card(
        directory, model.peft_config["default"], extra=card, results=card_results(result, info, config.eval_split)
    )
    results = results_record(result, config.eval_split, info.data_source, info.backbone_fingerprint, config.seed)
    write_json_atomically(os.path.join(directory, RESULTS_FILE), results)
    write_run_file(directory, run_record(config, info))


def _length(config: Any, info: RunInfo) -> str:
    """How long the run trained: its epochs, or its steps where ``max_steps`` stopped it earlier."""
    epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
    if info.total_steps < config.epochs * info.steps_per_epoch:
        return f"{info.total_steps} steps (max_steps; {epochs} planned)"
    return epochs


def data_name(source: dict[str, Any], domains: Iterable[str]) -> str:
    """The data a run scored, named as a reader knows it (a model card, a benchmark's report): UML-mini, a Hub
    dataset id as given, a local folder or file by its last part (never this machine's path), or the datasets of
    ``dataset_roots``. ``source`` is what :func:`~peft_puma.data.unified.describe_source` recorded."""
    if "uml_mini_dir" in source:
        return "UML-mini"
    if "dataset_path" in source:
        path = str(source["dataset_path"])
        return os.path.basename(os.path.normpath(path)) if looks_local(path) else path
    return "UML (" + ", ".join(domains) + ")"


def card_results(result: dict[str, Any], info: RunInfo, split: str) -> CardResults:
    """The model card's model-index entries: Recall@1 per dataset, unified and harmonic, on the data named as the Hub
    knows it (a Hub dataset id is listed under the card's ``datasets``; other data by its name only)."""
    source = info.data_source
    name = data_name(source, info.sizes)
    on_hub = "dataset_path" in source and not looks_local(str(source["dataset_path"]))
    kind = "uml_mini" if "uml_mini_dir" in source else name if "dataset_path" in source else "uml"
    per_dataset = result.get("per_dataset") or {}
    return CardResults(
        dataset_name=name,
        dataset_type=kind,
        split=split,
        per_domain={domain: metrics["recall@1"] for domain, metrics in per_dataset.items()},
        unified=result["unified"]["recall@1"],
        harmonic=(result.get("harmonic") or {}).get("recall@1"),
        on_hub=on_hub,
    )


def public_description(value: Any) -> Any:
    """``value`` with every local path (a string naming something on this machine) cut to its last part: what a run
    records for itself, made fit to publish."""
    if isinstance(value, dict):
        return {key: public_description(item) for key, item in value.items()}
    if isinstance(value, list):
        return [public_description(item) for item in value]
    if isinstance(value, str) and ("/" in value or os.sep in value) and is_local_path(value):
        return os.path.basename(os.path.normpath(value))
    return value


def run_record(config: Any, info: RunInfo) -> RunRecord:
    """The run file's record of this run: method, backbone, data and the whole config, so that the folder alone
    rebuilds the model. Written at start-up (marking the folder as a run's) and again with the outputs."""
    return RunRecord(
        method=config.method,
        backbone=config.backbone,
        backbone_format=config.backbone_format,
        image_size=info.image_size,
        trainable_params=info.saved_parameters,
        num_processes=info.num_processes,
        data_sizes=info.sizes,
        data_source=info.data_source,
        backbone_fingerprint=info.backbone_fingerprint,
        adapter_scale=info.adapter_scale,
        **local_backbone(config.backbone, config.output_dir),
        config=config.to_dict(),
    )


def local_backbone(backbone: str, output_dir: str) -> dict[str, str]:
    """Where a local backbone folder is, absolute and relative to the run folder, so that ``evaluate``, ``embed`` and
    ``search`` find it from any working directory (a Hub id records nothing)."""
    if not os.path.isdir(backbone):
        return {}
    absolute = os.path.abspath(backbone)
    return {"backbone_path": absolute, "backbone_from_run": os.path.relpath(absolute, os.path.abspath(output_dir))}


# What an upload of a run folder leaves out: the run file and the checkpoints hold local paths and resume state, the
# logs are the trackers' own, the lock is the writer's; everything else is the adapter and its evidence.
_NOT_UPLOADED = (RUN_FILE, CHECKPOINTS, LOGS, LOCK_FILE)


def push_folder(directory: str, repo_id: str, *, private: bool = False) -> str:
    """Upload the run folder's adapter, card, image processor and results to the Hub; returns the repository URL.

    The upload is a copy made fit to publish: without the run file, checkpoints and logs, with every local path in its
    JSON files cut to its last part, the adapter config naming the backbone by Hub id only, and the card's loading
    code naming ``repo_id``. ``private`` creates the repository private (an existing one keeps its visibility).
    """
    api = HfApi()
    url = api.create_repo(repo_id, exist_ok=True, private=private)
    with tempfile.TemporaryDirectory() as staging:
        for name in sorted(os.listdir(directory)):
            if name in _NOT_UPLOADED or name.startswith("."):
                continue
            source, target = os.path.join(directory, name), os.path.join(staging, name)
            (shutil.copytree if os.path.isdir(source) else shutil.copy2)(source, target)
        prepare_for_upload(staging, repo_id)  # first: it reads the backbone's path to tell its Hub id
        _publish_json_files(staging)
        api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message="PUMA adapter")
    return str(url)


def _publish_json_files(folder: str) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if name.endswith(".json"):
                with open(path, encoding="utf-8") as handle:
                    values = json.load(handle)
                with open(path, "w", encoding="utf-8") as handle:
                    json.dump(public_description(values), handle, indent=2)
            elif name.endswith(".jsonl"):
                with open(path, encoding="utf-8") as handle:
                    lines = [json.loads(line) for line in handle if line.strip()]
                with open(path, "w", encoding="utf-8") as handle:
                    handle.writelines(json.dumps(public_description(line)) + "\n" for line in lines)
