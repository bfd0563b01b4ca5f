"""The README's quick start runs as written (offline, in a fresh process)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start_code() -> str:
    section = README.read_text().split("## Quick start", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_quick_start_runs_as_written(tmp_path):
    code = quick_start_code()
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trainable params: 2,485,376" in result.stdout
    assert (tmp_path / "out" / "puma" / "adapter_model.safetensors").stat().st_size < 11 * 2**20


def test_readme_states_the_setup_main_job_and_test_commands():
    text = README.read_text()
    assert "pip install torch==2.13.0" in text
    assert "python -m peft_puma.train --config configs/uml_mini.yaml" in text
    assert "python -m pytest" in text
