"""What a run's data is, beyond its size: the classes of its split record and a fingerprint of its files' listing,
so that ``--resume`` refuses a collection of the same shape but other images or other classes (docs/training.md,
"Resuming"). Counts alone (``data_sizes``) let another collection with the same per-domain counts through.

The listing is every file under the recorded data source's local paths (``dataset_path``, ``uml_mini_dir``,
``dataset_roots``): its path relative to the source and its size, hashed; hidden files and the ``cache-*`` files the
datasets library writes beside a saved dataset are left out, so a run's own reading does not change it. A source that
is no local path (a Hub dataset, named with its revision in the config) has no listing, and is not compared by it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from ..data.splits import SplitRecord

LOCAL_PATH_KEYS = ("dataset_path", "uml_mini_dir")  # keys of a data source description that name one local path
CLASSES = "data classes (the split record's classes)"
FILES = "data files (names and sizes of the source's files)"


def data_identity(description: Mapping[str, Any], split: SplitRecord | None) -> dict[str, str | None]:
    """``{CLASSES: hash or None, FILES: hash or None}`` of a loaded source (its ``description`` and split record)."""
    return {CLASSES: _classes_hash(split), FILES: listing_fingerprint(source_paths(description))}


def source_paths(description: Mapping[str, Any]) -> list[str]:
    """The local files or folders a source description names (none for a Hub dataset)."""
    paths = [description[key] for key in LOCAL_PATH_KEYS if isinstance(description.get(key), str)]
    roots = description.get("dataset_roots") or {}
    paths += [roots[name] for name in sorted(roots) if isinstance(roots[name], str)]
    return [path for path in paths if os.path.exists(path)]


def listing_fingerprint(paths: list[str]) -> str | None:
    """A short hash of the relative paths and sizes of every file under ``paths`` (``None`` for no path)."""
    if not paths:
        return None
    digest = hashlib.sha256()
    for index, root in enumerate(paths):
        for relative, size in _listing(root):
            # file names may hold any bytes (non-UTF-8 names arrive as surrogate escapes): hash the bytes themselves
            digest.update(f"{index}\t{relative}\t{size}\n".encode("utf-8", "surrogateescape"))
    return f"sha256:{digest.hexdigest()[:16]}"


def _listing(root: str) -> Iterator[tuple[str, int]]:
    if not os.path.isdir(root):
        yield os.path.basename(root), _size(root)
        return
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            if name.startswith((".", "cache-")):
                continue
            path = os.path.join(folder, name)
            yield os.path.relpath(path, root), _size(path)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:  # a broken link: listed, without a size
        return -1


def _classes_hash(split: SplitRecord | None) -> str | None:
    if split is None:
        return None
    text = json.dumps(split.domains, sort_keys=True, default=str)
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()[:16]}"
