"""The HuggingFace ``evaluate`` metric of peft_puma (``puma_retrieval.py``), loaded by path, never imported here.

``evaluate.load`` copies the script into its module cache and imports it from there, so the script uses absolute
imports of ``peft_puma`` only. Use :func:`peft_puma.evaluation.load_metric` or ``evaluate.load(METRIC_PATH)``.
"""
