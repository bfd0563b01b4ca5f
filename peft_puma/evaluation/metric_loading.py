"""Where the ``evaluate`` metric script lives, and a loader that imports ``evaluate`` only when called.

``import evaluate`` costs seconds and hundreds of MB (measured here: 7-8 s and ~500 MB, as it imports transformers'
pipelines), so ``import peft_puma.evaluation`` must not pay it; this module only knows the script's path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Absolute path of the metric script inside the installed package: ``evaluate.load(METRIC_PATH)`` loads it offline.
METRIC_PATH: str = str(Path(__file__).resolve().parent / "metric" / "puma_retrieval.py")


def load_metric(config_name: str = "default", **load_kwargs: Any) -> Any:
    """``evaluate.load(METRIC_PATH, config_name, ...)``: the PUMA retrieval metric as an ``evaluate.Metric``.

    ``config_name``: ``"default"`` (columns predictions and references; domains and roles are ``compute`` arguments)
    or ``"multi_dataset"`` (domains and roles are columns too, so ``add_batch`` can carry them).
    """
    import evaluate  # heavy: imported only here

    return evaluate.load(METRIC_PATH, config_name, **load_kwargs)
