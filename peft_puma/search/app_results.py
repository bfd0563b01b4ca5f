"""What the search app shows, as plain functions of the search library (docs/search.md, "The app").

:class:`IndexSearch` opens an index folder for interactive queries: the same identity check as ``query`` (an index
of another adapter is refused, the query embedded with the adapter the index names, through the fused eval path of
:func:`peft_puma.inference.loading.load_for_inference`), then :meth:`IndexSearch.search` turns one query image into
:class:`Hit` s: gallery row, score, the name and collection to show, and whether the result is of the query's class
when both classes are known (a query picked from a labelled index). The Gradio page (:mod:`peft_puma.search.app`)
only wires these to components, so everything here is tested without a browser.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from ..errors import InvalidInputError
from ..evaluation.knn import nearest_neighbours
from ..inference.embedding import embed_images
from ..owned_paths import write_file_atomically
from .embedding import load_model, transform_from_record
from .folder import open_index_folder
from .identity import query_adapter
from .rows import RowImages, class_of, describe_row

THUMBNAIL = 192  # pixels of the longer side of a result's thumbnail
MAX_K = 50  # results a page shows at most per list


@dataclass(frozen=True)
class Hit:
    """One result of a query: its gallery row, rank, cosine score, what to call it, its collection, and ``match``
    (``True`` / ``False`` against the query's class, ``None`` where either class is unknown)."""

    row: int
    rank: int
    score: float
    name: str
    collection: str | None
    match: bool | None

    def caption(self) -> str:
        """``✓ 0.953 · label 3 · colours``: the mark, score, name and collection under a thumbnail (its place in the
        list is its rank)."""
        mark = {True: "✓ ", False: "✗ ", None: ""}[self.match]
        where = f" · {self.collection}" if self.collection else ""
        return f"{mark}{self.score:.3f} · {self.name}{where}"


def _collection(described: dict[str, Any], gallery: dict[str, Any]) -> str | None:
    """The row's collection: the rows' own ``collection`` where recorded, else its ``dataset`` column, else (a folder
    whose classes were not read from its tree) the first folder of its path under the indexed folder; ``None`` where
    there is none."""
    for field in ("collection", "dataset"):
        if described.get(field) is not None:
            return str(described[field])
    if "path" in described and described.get("class_name") is None:
        relative = os.path.relpath(described["path"], gallery.get("folder", ""))
        head, _, rest = relative.partition(os.sep)
        return head if rest else None
    return None


def _name(described: dict[str, Any]) -> str:
    """The row's class name where recorded, else its label, else its file name, else its row number."""
    if described.get("class_name") is not None:
        return str(described["class_name"])
    if described.get("label") is not None:
        return f"label {described['label']}"
    if "path" in described:
        return os.path.basename(described["path"])
    return f"row {described['row']}"


def _same_gallery(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two indexes hold the same rows in the same order (then a row of one is the same image in the other)."""
    keys = ("source", "dataset", "split", "folder", "paths", "num_rows")
    return all(one.get(key) == other.get(key) for key in keys)


class IndexSearch:
    """An index folder opened for interactive queries (the model loaded once; searches may come from many threads)."""

    def __init__(self, folder: str, adapter: str | None = None) -> None:
        self.folder = os.path.abspath(folder)
        self.index, self.manifest = open_index_folder(folder)
        self.gallery = self.manifest["gallery"]
        chosen = query_adapter(self.manifest["model"], adapter)
        self.model, _, _ = load_model(self.manifest["model"], chosen)
        self.model.eval()
        self.transform = transform_from_record(self.manifest["preprocessing"])
        self.described = [describe_row(self.gallery, row) for row in range(self.index.num_vectors)]
        self.collection_of_row = [_collection(fields, self.gallery) for fields in self.described]
        self.collections = sorted({name for name in self.collection_of_row if name is not None})
        self._rows_of = {
            name: torch.tensor([row for row, of in enumerate(self.collection_of_row) if of == name])
            for name in self.collections
        }
        self._images = RowImages(self.gallery)
        self._lock = threading.Lock()  # one forward pass at a time: the cores are shared anyway
        # Thumbnails are files made once each, atomically (see thumbnail_file); removed when the process ends.
        self._thumbnails = tempfile.mkdtemp(prefix="peft_puma_app_thumbnails_")
        atexit.register(shutil.rmtree, self._thumbnails, ignore_errors=True)

    @property
    def model_name(self) -> str:
        """The adapter folder's name, or ``zero-shot <backbone>``: how the page labels this index's results."""
        model = self.manifest["model"]
        if model["zero_shot"] or model["adapter"] is None:
            return f"zero-shot {os.path.basename(str(model['backbone']).rstrip('/'))}"
        return os.path.basename(str(model["adapter"]).rstrip("/"))

    def row_image(self, row: int) -> Image.Image:
        """The gallery image of ``row``; an ``InvalidInputError`` when it has gone since the index was built."""
        if not 0 <= row < self.index.num_vectors:
            raise InvalidInputError(f"Gallery row {row} is outside the index's rows 0 .. {self.index.num_vectors - 1}.")
        image = self._images(row)
        if image is None:
            raise InvalidInputError(f"The image of gallery row {row} cannot be read any more; build the index again.")
        return image

    def thumbnail(self, row: int) -> Image.Image:
        """A copy of ``row``'s image at most :data:`THUMBNAIL` pixels on its longer side (grey when it has gone)."""
        image = self._images(row) or Image.new("RGB", (THUMBNAIL, THUMBNAIL), (200, 200, 200))
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        return image

    def thumbnail_file(self, row: int) -> str:
        """The path of :meth:`thumbnail` as a file, written the first time a row is shown and renamed into place.

        The page hands Gradio this path rather than the image: Gradio copies a file into its cache under a temporary
        name and renames it, while an image it encodes itself is rewritten in place at a path named by its bytes, so
        that 16 queries showing the same neighbour could read one thumbnail while another rewrote it (a browser then
        got a cut-off image: "Too little data for declared Content-Length").
        """
        path = os.path.join(self._thumbnails, f"row_{row}.png")
        if not os.path.exists(path):
            image = self.thumbnail(row)
            write_file_atomically(path, lambda partial: image.save(partial, format="PNG"))
        return path

    def query_label(self, row: int) -> str:
        """How the page names a query picked from the gallery: its name and collection."""
        collection = self.collection_of_row[row]
        return _name(self.described[row]) + (f" · {collection}" if collection else "")

    def embed(self, image: Image.Image) -> torch.Tensor:
        """``(1, D)`` embedding of one image, with the index's model and eval preprocessing."""
        pixels = self.transform.transform_image(image.convert("RGB")).unsqueeze(0)
        with self._lock:
            embedding = embed_images(self.model, 1, lambda rows: pixels, batch_size=1, progress=False)
        return torch.nn.functional.normalize(embedding, dim=1)  # as the index's vectors: scores are cosines

    def search(
        self,
        image: Image.Image,
        k: int,
        *,
        query_row: int | None = None,
        collection: str | None = None,
        embedding: torch.Tensor | None = None,
    ) -> list[Hit]:
        """The ``k`` gallery rows nearest ``image`` (best first), within ``collection`` when one is given.

        ``query_row``: the gallery row the query was picked from: it is left out of its own results (as the
        evaluation does) and its class marks each result right or wrong. ``embedding``: the image's, when known.
        """
        vector = self.embed(image) if embedding is None else embedding
        rows = self._rows_of.get(collection) if collection is not None else None
        if collection is not None and rows is None:
            known = ", ".join(self.collections) or "none"
            raise InvalidInputError(f"No collection {collection!r} in this index; its collections: {known}.")
        found = self._nearest(vector, k, rows, query_row)
        query_class = class_of(self.gallery, query_row) if query_row is not None else None
        hits = []
        for rank, (score, row) in enumerate(found, start=1):
            row_class = class_of(self.gallery, row)
            match = None if query_class is None or row_class is None else row_class == query_class
            fields = self.described[row]
            hits.append(Hit(row, rank, score, _name(fields), self.collection_of_row[row], match))
        return hits

    def search_collections(
        self, image: Image.Image, k: int, *, query_row: int | None = None, embedding: torch.Tensor | None = None
    ) -> dict[str, list[Hit]]:
        """The ``k`` nearest rows of every collection, for one query (embedded once)."""
        vector = self.embed(image) if embedding is None else embedding
        return {
            name: self.search(image, k, query_row=query_row, collection=name, embedding=vector)
            for name in self.collections
        }

    def shared_row(self, other: IndexSearch, row: int | None) -> int | None:
        """``row`` of this index as a row of ``other`` (same gallery, same order), else ``None``."""
        return row if row is not None and _same_gallery(self.gallery, other.gallery) else None

    def sample_rows(self, count: int) -> list[int]:
        """``count`` gallery rows spread evenly over every collection (row order within each): the page's picks."""
        groups = [self._rows_of[name].tolist() for name in self.collections] or [list(range(self.index.num_vectors))]
        per_group = max(1, count // len(groups))
        picked = []
        for rows in groups:
            step = max(1, len(rows) // per_group)
            picked += rows[::step][:per_group]
        return picked[:count]

    def _nearest(
        self, vector: torch.Tensor, k: int, rows: torch.Tensor | None, query_row: int | None
    ) -> list[tuple[float, int]]:
        """``(score, row)`` of the ``k`` nearest rows (all, or ``rows``), leaving ``query_row`` out; ``k`` is cut to
        what there is to return."""
        if self.index.index_type == "flat":
            candidates = rows if rows is not None else None
            gallery = self.index.vectors() if candidates is None else self.index.vectors()[candidates]
            own = -1
            if query_row is not None:
                positions = (candidates == query_row).nonzero() if candidates is not None else [[query_row]]
                own = int(positions[0][0]) if len(positions) else -1
            searchable = gallery.shape[0] - (own >= 0)
            if searchable < 1:
                return []
            scores, found = nearest_neighbours(
                vector, gallery, min(k, searchable), self_index=torch.tensor([own]), backend="auto"
            )
            found = found[0] if candidates is None else candidates[found[0]]
            return list(zip(scores[0].tolist(), found.tolist()))
        return self._approximate(vector, k, rows, query_row)

    def _approximate(
        self, vector: torch.Tensor, k: int, rows: torch.Tensor | None, query_row: int | None
    ) -> list[tuple[float, int]]:
        """An HNSW or IVF index: search ever more rows until ``k`` of the wanted ones (or all of them) are found."""
        wanted = set(rows.tolist()) if rows is not None else None
        total = self.index.num_vectors
        width = min(total, k + 1)
        while True:
            scores, found = self.index.search(vector, width)
            kept = [
                (score, row)
                for score, row in zip(scores[0].tolist(), found[0].tolist())
                if row >= 0 and row != query_row and (wanted is None or row in wanted)
            ]
            if len(kept) >= k or width >= total:
                return kept[:k]
            width = min(total, width * 4)


def checked_k(k: Any, limit: int = MAX_K) -> int:
    """``k`` from the page (a slider sends floats) as an int in ``[1, limit]``; an ``InvalidInputError`` otherwise."""
    try:
        value = int(k)
    except (TypeError, ValueError):
        raise InvalidInputError(f"k must be a whole number between 1 and {limit}; got {k!r}.") from None
    if value != k or not 1 <= value <= limit:
        raise InvalidInputError(f"k must be a whole number between 1 and {limit}; got {k!r}.")
    return value


def open_query_image(path: str) -> Image.Image:
    """The RGB image of an uploaded file, or an ``InvalidInputError`` that says it is not one (never PIL's error)."""
    try:
        with Image.open(path) as opened:
            return opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        name = os.path.basename(path)
        raise InvalidInputError(
            f"{name} is not an image this app can read; upload a JPEG, PNG, GIF, BMP, TIFF or WebP file."
        ) from None


def captions(hits: Sequence[Hit]) -> list[str]:
    return [hit.caption() for hit in hits]
