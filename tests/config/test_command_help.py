"""Every command prints its ``--help`` from a fresh interpreter (its imports resolve whatever order they run in: an
import cycle through the package would only show when a command is the first thing imported), and every option there
has help text and a readable value placeholder: ``PATH``, ``INT``, ``FLOAT ...``, ``{a,b}``; never argparse's or a
type's raw spelling (``[STR|NULL]``, ``INT [INT ...]``), and never a default said twice."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

COMMANDS = [
    ["peft_puma.train"],
    ["peft_puma.evaluate"],
    ["peft_puma.embed"],
    ["peft_puma.search", "index"],
    ["peft_puma.search", "query"],
    ["peft_puma.search", "app"],
    ["peft_puma.backbones.timm_vit"],
    ["peft_puma.data.uml_mini"],
    ["peft_puma.standin"],
]
# A placeholder that is a type's name or argparse's optional-value brackets, not a word for the value.
UGLY = re.compile(r"[\[\]|]|\b(STR|NULL|NONE|NONETYPE|LIST|DICT)\b")
OPTION = re.compile(r"^  (-\S.*?)(?:\s{2,}(\S.*))?$")
POSITIONAL = re.compile(r"^  ([^\s-]\S*)(?:\s{2,}(\S.*))?$")


def help_entries(text: str) -> dict[str, str]:
    """``{invocation: help}`` of every option and positional argument of an argparse ``--help`` text (the sections
    after the usage and description: a line ending with ``:`` at the margin starts one, any other line at the margin
    ends it)."""
    entries: dict[str, str] = {}
    current, in_section = None, False
    for line in text.splitlines():
        if line and not line.startswith(" "):
            in_section, current = line.endswith(":"), None
            continue
        if not in_section or not line.strip():
            continue
        match = OPTION.match(line) or POSITIONAL.match(line)
        if match:
            current = match.group(1).strip()
            entries[current] = match.group(2) or ""
        elif current is not None and line.startswith("    "):
            entries[current] = f"{entries[current]} {line.strip()}".strip()
    return entries


def test_the_parser_of_help_texts_finds_missing_help_and_ugly_placeholders():
    text = (
        "usage: x\n\noptions:\n  --a INT     has help\n  --b [STR|NULL]\n  --c X\n              help on the next line\n"
    )
    assert help_entries(text) == {"--a INT": "has help", "--b [STR|NULL]": "", "--c X": "help on the next line"}
    assert UGLY.search("--b [STR|NULL]") and UGLY.search("--k INT [INT ...]") and not UGLY.search("--k INT ...")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_starts_fresh_and_every_option_has_help_and_a_readable_placeholder(command):
    result = subprocess.run(
        [sys.executable, "-m", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},  # one option per line where the help fits
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    entries = help_entries(result.stdout)
    assert len(entries) > 2, result.stdout
    missing = [invocation for invocation, text in entries.items() if not text]
    ugly = [invocation for invocation in entries if UGLY.search(invocation)]
    twice = [invocation for invocation, text in entries.items() if len(re.findall(r"\bdefault\b", text, re.I)) > 1]
    assert not missing, f"options without help: {missing}"
    assert not ugly, f"options shown with a raw placeholder: {ugly}"
    assert not twice, f"options whose help says the default twice: {twice}"
