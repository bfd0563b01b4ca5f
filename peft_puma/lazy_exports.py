"""Package exports that load their module on first use, so importing a package stays cheap (PEP 562).

``import peft_puma`` must not pay for torch-heavy or optional modules it does not need (data builders, faiss, the
timm loader, model loading); a package lists what it exports and where each name lives, and gets its module-level
``__getattr__`` and ``__dir__`` from :func:`lazy_exports`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose ``exports`` maps each public name to the module (relative to
    the package, e.g. ``".loading"``) that defines it. A loaded name is cached in the package's namespace."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
