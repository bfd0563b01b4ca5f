"""The face of peft_puma.data: every advertised name resolves, and importing it does no heavy work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import peft_puma.data as data


def test_every_exported_name_resolves() -> None:
    for name in data.__all__:
        assert getattr(data, name) is not None, name
    assert set(data.__all__) <= set(dir(data))


def test_import_is_lazy() -> None:
    # The parent package is stubbed so that only peft_puma.data's own import work is measured (importing peft_puma
    # registers PUMA with PEFT, which is not this package's cost).
    code = (
        "import sys, types\n"
        f"parent = types.ModuleType('peft_puma'); parent.__path__ = [{str(Path(data.__file__).parents[1])!r}]\n"
        "sys.modules['peft_puma'] = parent\n"
        "import peft_puma.data\n"
        "print(sorted(m for m in sys.modules if m.startswith('peft_puma.data.')), 'datasets' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[] False"
