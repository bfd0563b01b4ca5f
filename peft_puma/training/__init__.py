"""Training PUMA and its baselines with Accelerate (docs/spec.md section 6); see docs/training.md.

``python -m peft_puma.train --config configs/uml_mini.yaml --output_dir DIR`` (or under ``accelerate launch``) runs
:func:`train`; everything it does is reusable from Python:

- :class:`TrainingConfig` / :class:`DataConfig` / :func:`load_config`: the keys of a run (:mod:`.arguments`), YAML +
  command-line overrides (:mod:`.parsing`), validation;
- :data:`METHODS`: PUMA presets and the baselines (LoRA, full fine-tuning) by name; :func:`load_trained` rebuilds a
  saved run's model;
- :func:`train`: the run itself, returning a :class:`TrainResult`.

Using a trained run (loading it, embedding, its run file) is :mod:`peft_puma.inference`; the data a config names is
:mod:`peft_puma.data.unified`; backbones load with :mod:`peft_puma.backbones.loading`.
"""

from __future__ import annotations

from .arguments import DataConfig, TrainingConfig
from .loop import NonFiniteLossError, TrainResult, train
from .methods import METHODS, build_model, load_trained
from .parsing import load_config

__all__ = [
    "METHODS",
    "DataConfig",
    "NonFiniteLossError",
    "TrainResult",
    "TrainingConfig",
    "build_model",
    "load_config",
    "load_trained",
    "train",
]
