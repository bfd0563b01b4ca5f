"""Which code produced a result: the commit of the checkout peft_puma runs from, so that a benchmark result or a
test-read line can be traced to the code that made it."""

from __future__ import annotations

import os
import subprocess

# The repository root when peft_puma runs from a checkout (the package folder's parent).
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_commit() -> str | None:
    """The checkout's HEAD commit, with ``+dirty`` when tracked files differ from it; ``None`` outside a checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=_CHECKOUT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=_CHECKOUT, capture_output=True).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")
