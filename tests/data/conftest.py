"""Fixtures shared by the paper-dataset tests: fake copies of the original layouts, built in memory when possible."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import fake_layouts as fl
import pytest

# The fakes with the real class counts are ~80k tiny files: on tmpfs they take a second, on a busy disk far longer.
_SHM = Path("/dev/shm")


def _scratch(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    if _SHM.is_dir():
        return Path(tempfile.mkdtemp(prefix=f"peft_puma_{name}_", dir=_SHM))
    return tmp_path_factory.mktemp(name)


@pytest.fixture(scope="session")
def paper_roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Fake originals of the eight datasets with the real class counts (build once per session, read-only)."""
    base = _scratch(tmp_path_factory, "paper")
    yield {name: maker(base / name) for name, maker in fl.MAKERS.items()}
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def fast_tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch folder on tmpfs (for tests that build a large fake of their own)."""
    base = _scratch(tmp_path_factory, "scratch")
    yield base
    shutil.rmtree(base, ignore_errors=True)
