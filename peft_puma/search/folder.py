"""The index folder: ``index.faiss`` and the manifest ``peft_puma_index.json`` (docs/search.md, "The manifest").

The folder follows the project's rule for what it writes (docs/safety.md): it may be new, empty, or an index folder
this command wrote (its manifest, and nothing but ``index.faiss`` beside it); anything else is refused with a
:class:`~peft_puma.errors.ForeignContentError` before any work. A new index is built in a staging folder beside the
destination and moved into place, so an interrupted build leaves the previous index or the new one, never half of one.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

from ..errors import InvalidInputError
from ..owned_paths import (
    OwnedLayout,
    discard_staging,
    make_staging_folder,
    move_into_place,
    write_failures_reported,
    write_json_atomically,
)
from .index import SearchIndex, read_index, require_faiss, write_index

MANIFEST = "peft_puma_index.json"
INDEX_FILE = "index.faiss"
FORMAT_VERSION = 1
INDEX_LAYOUT = OwnedLayout.of("a peft_puma search index", signature=[MANIFEST], others=[INDEX_FILE])


def check_index_output(folder: str) -> bool:
    """Whether ``folder`` holds an index to be replaced; ``ForeignContentError`` if it may not be written."""
    return INDEX_LAYOUT.is_owned(folder)


def make_manifest(
    index: SearchIndex, model: dict[str, Any], preprocessing: dict[str, Any], gallery: dict[str, Any]
) -> dict[str, Any]:
    """The manifest of an index: its kind and parameters, the model identity, the preprocessing and the rows."""
    return {
        "peft_puma_index": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "index": {
            "type": index.index_type,
            "params": index.params,
            "metric": "inner_product",
            "num_vectors": index.num_vectors,
            "dimension": index.dimension,
            "faiss_version": require_faiss().__version__,
        },
        "model": model,
        "preprocessing": preprocessing,
        "gallery": gallery,
    }


def index_lock_path(folder: str) -> str:
    """The lock file of the index folder ``folder``: beside it (``.NAME.peft_puma.lock``), since the folder itself is
    replaced whole when the build moves its staging folder into place."""
    parent, name = os.path.split(os.path.normpath(os.path.abspath(folder)))
    return os.path.join(parent, f".{name}.peft_puma.lock")


def save_index_folder(folder: str, index: SearchIndex, manifest: dict[str, Any]) -> None:
    """Write ``index`` and ``manifest`` as the index folder ``folder`` (staged, then moved into place)."""
    rows = manifest["gallery"]["num_rows"]
    if rows != index.num_vectors:
        raise InvalidInputError(f"The manifest describes {rows} gallery rows; the index holds {index.num_vectors}.")
    check_index_output(folder)
    staging = make_staging_folder(folder)

    def kept() -> str:
        return "the index folder there is unchanged" if os.path.isdir(folder) else "nothing was written"

    try:
        with write_failures_reported(f"Writing the index folder {folder!r}", folder, kept):
            write_index(index, os.path.join(staging, INDEX_FILE))
            write_json_atomically(os.path.join(staging, MANIFEST), manifest)
            move_into_place(staging, folder, INDEX_LAYOUT)
    except BaseException:
        discard_staging(staging)
        raise


def read_manifest(folder: str) -> dict[str, Any]:
    """The manifest of the index folder ``folder``; an ``InvalidInputError`` naming what is wrong otherwise."""
    if not os.path.exists(folder):
        raise InvalidInputError(f"The index folder {folder!r} does not exist; build it with the index sub-command.")
    path = os.path.join(folder, MANIFEST)
    if not os.path.isdir(folder) or not os.path.isfile(path):
        raise InvalidInputError(
            f"{folder!r} is not a search index (no {MANIFEST}); give a folder written by the index sub-command."
        )
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"Cannot read the index manifest {path!r}: {error}.") from None
    version = manifest.get("peft_puma_index") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise InvalidInputError(
            f"{path!r} is an index manifest of format {version!r}; this peft_puma reads format {FORMAT_VERSION}. "
            "Build the index again."
        )
    return manifest


def open_index_folder(folder: str) -> tuple[SearchIndex, dict[str, Any]]:
    """``(index, manifest)`` of an index folder written by :func:`save_index_folder`."""
    manifest = read_manifest(folder)
    described = manifest["index"]
    index = read_index(os.path.join(folder, INDEX_FILE), described["type"], described["params"])
    if index.num_vectors != manifest["gallery"]["num_rows"]:
        raise InvalidInputError(
            f"{folder!r}: the faiss index holds {index.num_vectors} vectors but the manifest describes "
            f"{manifest['gallery']['num_rows']} rows; build the index again."
        )
    return index, manifest
