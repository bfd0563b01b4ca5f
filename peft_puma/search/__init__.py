"""Image search with a PUMA embedding model: one index over images of many domains (arXiv 2309.08944; docs/search.md).

``python -m peft_puma.search index`` embeds a folder of images or a dataset split and writes a faiss index folder;
``python -m peft_puma.search query`` embeds query images with the same model and returns their nearest rows, as JSON
and as a contact-sheet PNG. From Python:

- :func:`build_index` (embeddings -> :class:`SearchIndex`, ``"flat"`` exact, ``"hnsw"`` or ``"ivf"`` approximate) and
  :meth:`SearchIndex.search` (queries -> top-k scores and rows; the flat index gives the evaluation's exact kNN);
- :func:`save_index_folder` / :func:`open_index_folder`: the index folder with its manifest;
- :func:`model_identity`, :func:`contact_sheet`, :func:`write_retrieval_examples` (docs/search.md, "Retrieval
  examples").

Importing this package imports neither faiss nor the model code: faiss is loaded when an index is built or read.
"""

from __future__ import annotations

from ..lazy_exports import lazy_exports

# Loaded on first use: the trainer imports the retrieval-examples module of this package, which must not pull in
# model loading (a cycle through peft_puma.inference) or the index code.
_EXPORTS = {
    "INDEX_FILE": ".folder",
    "MANIFEST": ".folder",
    "open_index_folder": ".folder",
    "save_index_folder": ".folder",
    "Tile": ".grid",
    "contact_sheet": ".grid",
    "grid_size": ".grid",
    "model_identity": ".identity",
    "INDEX_TYPES": ".index",
    "SearchIndex": ".index",
    "build_index": ".index",
    "read_index": ".index",
    "write_index": ".index",
    "write_retrieval_examples": ".examples",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
