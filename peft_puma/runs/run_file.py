"""The run file ``peft_puma_training.json``: what a training run records so that its folder alone rebuilds the model.

The trainer writes it into its output folder at start-up (it marks the folder as a run's) and again with the outputs
(docs/training.md). :func:`peft_puma.inference.loading.load_for_inference` reads the backbone and image size from it,
``python -m peft_puma.search`` the backbone an index was embedded with, and ``benchmarks/accuracy.py
--reuse_finished`` the recipe and data of a finished run. This module is the only one that writes or parses the file;
everyone else holds a :class:`RunRecord`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

from ..errors import IncompatibleCheckpointError
from .layout import RUN_FILE


@dataclass(frozen=True)
class RunRecord:
    """The fields of the run file.

    ``config`` is the run's whole config (``TrainingConfig.to_dict()``: every key of the run, flat, with its
    ``puma`` and ``loss_options`` mappings; its ``eval_split`` is the split ``results.json`` scores). ``data_sizes``:
    ``{dataset: {train_images, train_classes, test_images, test_classes}}``, with ``validation_images`` and
    ``validation_classes`` after the train counts where the data has a validation split; ``data_source``: where the
    data came from (for UML-mini its seed, scale and builder version).
    """

    method: str
    backbone: str
    config: dict[str, Any]
    backbone_format: str | None = None
    image_size: int | None = None
    trainable_params: int | None = None  # parameters saved in the adapter; absent from older run files
    num_processes: int = 1
    data_sizes: dict[str, dict[str, int]] | None = None
    data_source: dict[str, Any] | None = None
    backbone_fingerprint: str | None = None  # the frozen weights' fingerprint; absent from older run files
    adapter_scale: float | None = None  # the adapter's output scale s as trained; absent from older run files
    backbone_path: str | None = None  # a local backbone folder, absolute, so the run works from any folder
    backbone_from_run: str | None = None  # the same folder relative to the run folder (a project moved whole)

    def backbone_source(self, run_folder: str) -> str:
        """Where to load the backbone from: the folder the config names where it exists from here, else its absolute
        path as recorded at training, else that path relative to the run folder (a project tree moved as a whole),
        else the name as the config gives it (a Hub id, or a path whose absence the loader reports)."""
        if not self.backbone_path or os.path.isdir(self.backbone):
            return self.backbone
        if os.path.isdir(self.backbone_path):
            return self.backbone_path
        if self.backbone_from_run and os.path.isdir(os.path.join(run_folder, self.backbone_from_run)):
            return os.path.normpath(os.path.join(run_folder, self.backbone_from_run))
        return self.backbone

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON object: the short fields first, the whole config last."""
        values = dataclasses.asdict(self)
        values["config"] = values.pop("config")
        return values

    @classmethod
    def from_dict(cls, values: Any, source: str = RUN_FILE) -> RunRecord:
        """The record of a run file's JSON object; keys this version does not know are ignored."""
        required = [field.name for field in dataclasses.fields(cls) if field.default is dataclasses.MISSING]
        missing = [name for name in required if not isinstance(values, dict) or name not in values]
        if missing:
            raise IncompatibleCheckpointError(
                f"{source} is not a peft_puma run file (no {', '.join(missing)}); give the output_dir of a training "
                "run."
            )
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def write_run_file(directory: str, record: RunRecord) -> None:
    """Write ``record`` as the run file of ``directory``."""
    with open(os.path.join(directory, RUN_FILE), "w", encoding="utf-8") as handle:
        json.dump(record.to_dict(), handle, indent=1)
        handle.write("\n")


def read_run_file(directory: str) -> RunRecord | None:
    """The run file of ``directory``, or ``None`` where there is none (a folder written by ``save_pretrained``)."""
    path = os.path.join(directory, RUN_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        try:
            values = json.load(handle)
        except ValueError as error:
            raise IncompatibleCheckpointError(f"{path} is damaged ({error}); train the run again.") from None
    return RunRecord.from_dict(values, path)
