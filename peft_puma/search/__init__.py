"""Image search with a PUMA embedding model: one index over images of many domains (arXiv 2309.08944; docs/search.md).

``python -m peft_puma.search index`` embeds a folder of images or a dataset split and writes a faiss index folder;
``python -m peft_puma.search query`` embeds query images with the same model and returns their nearest rows, as JSON
and as a contact-sheet PNG. From Python:

- :func:`build_index` (embeddings -> :class:`SearchIndex`, ``"flat"`` exact, ``"hnsw"`` or ``"ivf"`` approximate) and
  :meth:`SearchIndex.search` (queries -> top-k scores and rows; the flat index gives the evaluation's exact kNN);
- :func:`save_index_folder` / :func:`open_index_folder`: the index folder with its manifest;
- :func:`model_identity` (docs/search.md, "The manifest and the identity check").

Importing this package does not import faiss: faiss is loaded when an index is built or read.
"""

from __future__ import annotations

from .folder import INDEX_FILE, MANIFEST, open_index_folder, save_index_folder
from .identity import model_identity
from .index import INDEX_TYPES, SearchIndex, build_index, read_index, write_index

__all__ = [
    "INDEX_FILE",
    "INDEX_TYPES",
    "MANIFEST",
    "SearchIndex",
    "build_index",
    "model_identity",
    "open_index_folder",
    "read_index",
    "save_index_folder",
    "write_index",
]
