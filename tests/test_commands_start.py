"""Every command starts in a fresh interpreter: its imports resolve whatever order they run in (an import cycle
through the package would only show when a command is the first thing imported)."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = [
    ["peft_puma.train"],
    ["peft_puma.evaluate"],
    ["peft_puma.embed"],
    ["peft_puma.search", "index"],
    ["peft_puma.search", "query"],
    ["peft_puma.data.uml_mini"],
    ["peft_puma.standin"],
    ["peft_puma.backbones.timm_vit"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_command_prints_its_help_from_a_fresh_interpreter(command):
    result = subprocess.run([sys.executable, "-m", *command, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
