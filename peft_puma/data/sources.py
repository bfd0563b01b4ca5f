"""What ``dataset_path`` names, told apart without being asked (docs/collections.md, "Sources"), and opening it.

- a folder written by ``save_to_disk`` (``dataset_dict.json``, or ``state.json`` beside ``dataset_info.json``):
  :data:`SAVED`, opened with ``datasets.load_from_disk``. One in the row schema (``image``, ``label``, ``dataset``,
  ``role``, with its splits: UML-mini, the paper's builds) is used exactly as before; any other goes through the
  columns a user names (:mod:`.columns`);
- a folder of data files ``datasets`` reads (Parquet, Arrow, CSV, JSON, or an ``imagefolder`` with a ``metadata``
  file), or one such file: :data:`FILES`, opened with ``datasets.load_dataset``;
- any other folder: a folder tree of images, :data:`CLASS_FOLDERS` or :data:`DOMAIN_FOLDERS` (:mod:`.folder_tree`);
- anything else: a Hub dataset id, :data:`HUB`, opened with ``datasets.load_dataset`` (``dataset_config``,
  ``dataset_revision``). Offline (``HF_HUB_OFFLINE=1``), or with the Hub out of reach, that is said at once in one
  line, rather than after half a minute of retries.

Opening never writes into the source (a user's folder may be read-only); ``datasets`` keeps its own cache elsewhere.
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlparse

import datasets

from ..errors import DatasetLayoutError
from .collections import Collection
from .columns import ColumnNames, check_collection_images, collection_of
from .folder_tree import CLASS_FOLDERS, DOMAIN_FOLDERS, tree_collection
from .images import DEFAULT_IMAGE_CHECK, BadImage, CheckMode
from .listing import is_image_file
from .schema import DATASET_COLUMN, IMAGE_COLUMN, LABEL_COLUMN, ROLE_COLUMN

SAVED = "saved_dataset"
FILES = "data_files"
HUB = "hub_dataset"
FOLDER_TREE = "folder_tree"
SOURCE_KINDS: tuple[str, ...] = (SAVED, FILES, FOLDER_TREE, HUB)
SCHEMA_COLUMNS = frozenset({IMAGE_COLUMN, LABEL_COLUMN, DATASET_COLUMN, ROLE_COLUMN})
DATA_FILE_BUILDERS: dict[str, str] = {
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
}
_METADATA_FILES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")
_HUB_PROBE_SECONDS = 3.0
ACCEPTED = (
    "Accepted: a folder of images (<class>/<image> or <domain>/<class>/<image>), a save_to_disk folder, data files "
    "datasets reads (Parquet, Arrow, CSV, JSON), or a Hub dataset id."
)


def source_kind(path: str) -> str:
    """The kind of source ``path`` is (one of :data:`SOURCE_KINDS`), from a look at its top level only."""
    if os.path.isfile(path):
        return FILES
    if not os.path.isdir(path):
        return HUB
    if os.path.isfile(os.path.join(path, "dataset_dict.json")) or all(
        os.path.isfile(os.path.join(path, name)) for name in ("state.json", "dataset_info.json")
    ):
        return SAVED
    return FILES if _holds_data_files(path) else FOLDER_TREE


def data_file_beside_images(folder: str) -> str | None:
    """The one data file (CSV, Parquet, JSON, ...) at the top of ``folder``, other than an ``imagefolder`` metadata
    file: where a folder holds its images and a table of them (``data.csv``: image, label, domain), the table is the
    data, and its columns win over folder names. ``None`` where there is none, or several."""
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    tables = [
        name
        for name in names
        if os.path.splitext(name)[1].lower() in DATA_FILE_BUILDERS and name not in _METADATA_FILES
        if os.path.isfile(os.path.join(folder, name))
    ]
    return os.path.join(folder, tables[0]) if len(tables) == 1 else None


def _holds_data_files(folder: str) -> bool:
    """Data files ``datasets`` reads at the top of ``folder`` or in its ``data/`` sub-folder, or a metadata file
    anywhere in its first two levels (an ``imagefolder`` with columns)."""
    for where in (folder, os.path.join(folder, "data")):
        try:
            names = os.listdir(where)
        except OSError:
            continue
        if any(os.path.splitext(name)[1].lower() in DATA_FILE_BUILDERS for name in names):
            return True
        if any(name in _METADATA_FILES for name in names):
            return True
    return False


def open_source(
    path: str,
    columns: ColumnNames,
    *,
    config_name: str | None = None,
    revision: str | None = None,
    check: CheckMode = DEFAULT_IMAGE_CHECK,
    on_error: str = "stop",
    unreadable: list[BadImage] | None = None,
) -> tuple[str, datasets.DatasetDict | Collection]:
    """``(kind, what it holds)``: a row-schema ``DatasetDict`` (used as it is) or a :class:`Collection`.

    ``unreadable``: what another process's check of the same source found (the image files it could not read), used
    instead of checking every file again (:func:`peft_puma.data.unified.load_source`)."""
    kind = source_kind(path)
    if kind == FOLDER_TREE:
        return kind, tree_collection(path, check=check, on_error=on_error, unreadable=unreadable)
    if kind == SAVED:
        data = _load_from_disk(path)
        if _in_row_schema(data):
            return kind, data
    elif kind == FILES:
        table = path if os.path.isfile(path) else data_file_beside_images(path)
        data = _load_dataset(table or path, config_name, revision, local=True)
        base = os.path.dirname(os.path.abspath(table)) if table else os.path.abspath(path)
        collection = collection_of(data, columns, _display_name(path), base=base)
        return kind, check_collection_images(collection, repr(path), check, on_error, unreadable)
    else:
        data = _load_dataset(path, config_name, revision, local=False)
    return kind, collection_of(data, columns, _display_name(path))


def _in_row_schema(data: Any) -> bool:
    """A saved DatasetDict of ours: a split with the row schema's own columns (the others are then checked)."""
    return isinstance(data, datasets.DatasetDict) and any(
        SCHEMA_COLUMNS <= set(split.column_names) for split in data.values()
    )


def _load_from_disk(path: str) -> datasets.Dataset | datasets.DatasetDict:
    try:
        return datasets.load_from_disk(path)
    except (FileNotFoundError, ValueError) as error:
        raise DatasetLayoutError(f"dataset_path {path!r} holds no dataset saved with save_to_disk ({error}).") from None


def _load_dataset(path: str, config_name: str | None, revision: str | None, *, local: bool) -> Any:
    """``datasets.load_dataset`` of a local file or folder, or of a Hub id (said at once when offline)."""
    if not local:
        _refuse_missing_path(path)
        _require_hub_reachable(path)
    arguments: dict[str, Any] = {"name": config_name, "revision": revision}
    builder = DATA_FILE_BUILDERS.get(os.path.splitext(path)[1].lower()) if os.path.isfile(path) else None
    if os.path.isfile(path) and builder is None:
        _refuse_other_file(path)
    try:
        if builder is not None:
            return datasets.load_dataset(builder, data_files=path, **arguments)
        return datasets.load_dataset(path, **arguments)
    except ConnectionError as error:
        if datasets.config.HF_HUB_OFFLINE:
            raise DatasetLayoutError(
                f"dataset_path {path!r} is not a local file or folder, and the Hub is offline (HF_HUB_OFFLINE=1) with "
                "no cached copy of it: give a local folder, or go online to download it."
            ) from None
        raise DatasetLayoutError(f"datasets cannot reach {path!r} ({_one_line(error)}). {ACCEPTED}") from None
    except (FileNotFoundError, ValueError, OSError) as error:
        what = "the local data files" if local else "the Hub dataset"
        raise DatasetLayoutError(f"datasets cannot open {what} {path!r} ({_one_line(error)}). {ACCEPTED}") from None


def _refuse_other_file(path: str) -> None:
    """A file that is not a data format ``datasets`` reads, named as such (an image, a text file)."""
    extension = os.path.splitext(path)[1].lower() or "(no extension)"
    what = "an image file" if is_image_file(path) else f"a {extension} file"
    formats = ", ".join(sorted(DATA_FILE_BUILDERS))
    raise DatasetLayoutError(
        f"dataset_path {path!r} is {what}, not a data file datasets reads ({formats}): give the folder that holds "
        f"the images, or a data file. {ACCEPTED}"
    )


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: " + " ".join(str(error).split())[:300]


def _refuse_missing_path(path: str) -> None:
    """A path that is clearly local (``./``, ``/``, ``~``, or more than one ``/``) but does not exist."""
    if path.startswith((".", "/", "~")) or path.count("/") > 1:
        raise DatasetLayoutError(f"dataset_path {path!r} does not exist. {ACCEPTED}")


def _require_hub_reachable(path: str) -> None:
    """Online, a quick connection to the Hub first: out of reach, one line at once rather than a minute of retries.
    (Offline, ``datasets`` looks in its cache only, and fails at once.)"""
    if datasets.config.HF_HUB_OFFLINE:
        return
    host = urlparse(datasets.config.HF_ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=_HUB_PROBE_SECONDS).close()
    except OSError as error:
        raise DatasetLayoutError(
            f"dataset_path {path!r} is not a local file or folder, and the Hub ({host}) cannot be reached "
            f"({error.strerror or error}): give a local folder, or set HF_HUB_OFFLINE=1 to use a cached copy."
        ) from None


def _display_name(path: str) -> str:
    """A source's name: a Hub id's dataset name, a local folder's name, a file's name without its extension (also
    the domain of a dataset without ``domain_column``)."""
    name = os.path.basename(os.path.normpath(path)) or path
    return os.path.splitext(name)[0] if os.path.isfile(path) else name


__all__ = ["CLASS_FOLDERS", "DOMAIN_FOLDERS", "FILES", "FOLDER_TREE", "HUB", "SAVED", "open_source", "source_kind"]
