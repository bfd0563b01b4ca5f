"""What a run folder holds, by name: the one place that knows the layout of a training run's output folder
(docs/training.md, "The run folder"; docs/safety.md says what may be replaced there).

A run folder holds the adapter as PEFT saves it (``adapter_config.json``, ``adapter_model.safetensors``, the model
card ``README.md``), its image processor (``preprocessor_config.json``: the eval transform), ``lora/`` or
``backbone/`` for the baselines that train them, ``results.json``, the run file
``peft_puma_training.json`` (:mod:`.run_file`), ``train_log.jsonl``, ``logs/`` (trackers), ``checkpoints/``
(:mod:`.checkpoints`) and the retrieval-examples sheet.
"""

from __future__ import annotations

from transformers.utils import IMAGE_PROCESSOR_NAME

from ..owned_paths import OwnedLayout
from ..tuners.puma.config import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME

RUN_FILE = "peft_puma_training.json"  # the run file (.run_file): what the folder alone rebuilds the model from
RESULTS_FILE = "results.json"  # evaluate_retrieval's mapping for the final epoch, with the split it scores
TRAIN_LOG = "train_log.jsonl"  # one JSON line per logged step, completed epoch and evaluation
CHECKPOINTS = "checkpoints"  # checkpoint-<step> folders (.checkpoints)
LOGS = "logs"  # the trackers' folder (TensorBoard, ...)
MODEL_CARD = "README.md"  # written by PEFT's save_pretrained, completed with the results table
EXAMPLES_FILE = "retrieval_examples.png"  # the retrieval-examples sheet (peft_puma.evaluation.examples)
LORA_FOLDER = "lora"  # LoRA's config and tensors, for the LoRA baseline
BACKBONE_FOLDER = "backbone"  # the fine-tuned backbone, for full fine-tuning
SPLIT_FILE = "data_split.json"  # the class split drawn for a collection without splits (peft_puma.data.splits)
ADAPTER_FILES = (CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME)  # what a folder needs to hold an adapter at all
LOCK_FILE = ".peft_puma.lock"  # held by the one process that writes the folder (.lock)

# What the trainer writes in its output folder; the run file (written at start-up) and the log mark it as a run folder.
RUN_LAYOUT = OwnedLayout.of(
    "a peft_puma training run",
    signature=[RUN_FILE, TRAIN_LOG, CHECKPOINTS, LOCK_FILE],
    others=[
        *ADAPTER_FILES,
        MODEL_CARD,
        IMAGE_PROCESSOR_NAME,
        RESULTS_FILE,
        LOGS,
        LORA_FOLDER,
        BACKBONE_FOLDER,
        EXAMPLES_FILE,
        SPLIT_FILE,
    ],
)
