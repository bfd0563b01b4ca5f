"""Suite-wide settings: the tests run offline, on tiny models built from configs."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Test reads of the suite's tiny runs go to a ledger of its own, never to the project's committed one
# (peft_puma/evaluation/test_reads.py); subprocesses inherit it.
os.environ["PEFT_PUMA_TEST_READS"] = os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"peft_puma_test_reads_{os.getpid()}.jsonl"
)
