"""Training PUMA and its baselines with Accelerate (docs/spec.md section 6); see docs/training.md.

``python -m peft_puma.train --config configs/uml_mini.yaml --output_dir DIR`` (or under ``accelerate launch``) runs
:func:`train`; everything it does is reusable from Python:

- :class:`TrainingConfig` / :func:`load_config`: the keys of a run (:mod:`.arguments`; the data keys are
  :class:`peft_puma.data.config.DataConfig`'s), YAML + command-line overrides (:mod:`peft_puma.config.parsing`),
  validation;
- :data:`METHODS`: PUMA presets and the baselines (LoRA, full fine-tuning) by name;
- :func:`train`: the run itself, returning a :class:`TrainResult`.

A run folder (its layout, run file, saving and rebuilding the model) is :mod:`peft_puma.runs`; using a trained run is
:mod:`peft_puma.inference`; the data a config names is
:mod:`peft_puma.data.unified`; backbones load with :mod:`peft_puma.backbones.loading`.
"""

from __future__ import annotations

from .arguments import TrainingConfig, load_config
from .loop import NonFiniteLossError, TrainResult, train
from .methods import METHODS, build_model

__all__ = [
    "METHODS",
    "NonFiniteLossError",
    "TrainResult",
    "TrainingConfig",
    "build_model",
    "load_config",
    "train",
]
