"""``python -m peft_puma.search query``: the top-k index rows of query images, as JSON and as a grid (docs/search.md,
"Querying").

Queries are image files (or folders of them) or rows of a saved dataset (then their labels are known and the grid
marks each result right or wrong). They are embedded with the index's own model and preprocessing, after the identity
check of :mod:`peft_puma.search.identity`. When the query rows come from the very split the index was built from, each
query's own row is left out of its results (leave-one-out, as the evaluation does: docs/evaluation.md).

The results (schema in docs/search.md)::

    {"peft_puma_search": 1, "index": ..., "index_type": ..., "k": ..., "leave_one_out": ..., "skipped": [...],
     "queries": [{"path": ... | "row", "label", "dataset", "results": [{"rank", "row", "score", "path" |
                  "label", "dataset", "role", "match"}]}]}
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data.images import FolderCheck, check_files
from ..data.saved import load_split
from ..data.splits import SplitRecord
from ..errors import InvalidConfigError, InvalidInputError
from ..evaluation.grid import MIN_THUMBNAIL, Tile, check_grid_output, contact_sheet, save_grid
from ..inference.embedding import embed_dataset, embed_folder
from ..owned_paths import check_json_output, write_json_atomically
from .embedding import expand_query_paths, load_model, transform_from_record
from .folder import open_index_folder
from .identity import query_adapter
from .rows import RowImages, class_of, dataset_rows, describe_row

RESULTS_KEY = "peft_puma_search"
RESULTS_VERSION = 1
_NAMED = 3  # unreadable query files named in a one-line error


def _readable_queries(paths: Sequence[str], on_error: str) -> FolderCheck:
    """The readable query files; one-line errors as ``peft_puma.embed`` gives them, warnings for skipped files."""
    check = check_files(expand_query_paths(paths))
    if not check.good:
        named = "; ".join(f"{item.path} ({item.reason})" for item in check.bad[:_NAMED])
        more = f"; and {len(check.bad) - _NAMED} more" if len(check.bad) > _NAMED else ""
        raise InvalidInputError(f"None of the {len(check.bad)} query image(s) can be read: {named}{more}.")
    if check.bad and on_error == "stop":
        first = check.bad[0]
        others = f" ({len(check.bad) - 1} more unreadable)" if len(check.bad) > 1 else ""
        raise InvalidInputError(
            f"Cannot read the query image {first.path!r}: {first.reason}{others}. Use --on_error skip to search "
            f"with the {len(check.good)} readable image(s)."
        )
    if check.bad:
        lines = [f"warning: skipped {len(check.bad)} of {len(check.good) + len(check.bad)} query image(s):"]
        lines += [f"  {item.path}: {item.reason}" for item in check.bad]
        print("\n".join(lines), file=sys.stderr)
    return check


def _split_record(gallery: dict[str, Any]) -> SplitRecord | None:
    """The class split the indexed collection was read with (its run's record), for queries from the same one."""
    path = gallery.get("split_record")
    return SplitRecord.read(path) if path and os.path.isfile(path) else None


def _on_error(args: Any, gallery: dict[str, Any]) -> str:
    """``--on_error``, else the one the index's gallery was read with where the queries come from the same collection
    (said on stderr), else ``"stop"``."""
    if args.on_error is not None:
        return args.on_error
    same = gallery.get("source") == "dataset" and gallery.get("dataset") == os.path.abspath(args.query_dataset)
    if same and gallery.get("on_error", "stop") != "stop":
        note = f"note: on_error {gallery['on_error']}, as the index's gallery was read from {args.query_dataset!r}"
        print(note, file=sys.stderr)
        return gallery["on_error"]
    return "stop"


def _query_rows(dataset: Any, rows: Sequence[int]) -> list[int]:
    bad = [row for row in rows if not 0 <= row < dataset.num_rows]
    if bad:
        raise InvalidInputError(f"--query_rows {bad} outside the split's rows 0 .. {dataset.num_rows - 1}.")
    if not rows:
        raise InvalidInputError("--query_rows needs at least one row number.")
    return list(rows)


def _check_outputs(args: Any) -> None:
    if args.k < 1:
        raise InvalidInputError(f"--k must be at least 1; got {args.k}.")
    if args.thumbnail_size < MIN_THUMBNAIL:
        raise InvalidConfigError(
            f"--thumbnail_size must be at least {MIN_THUMBNAIL} pixels; got {args.thumbnail_size}."
        )
    if args.output:
        check_json_output(args.output, RESULTS_KEY, "search results")
    if args.grid:
        check_grid_output(args.grid)


@dataclass
class _Queries:
    """The queries of one command: their JSON entries (results to come), classes, own rows in the index, pixels."""

    entries: list[dict[str, Any]]
    classes: list[tuple[Any, Any] | None]
    exclude: torch.Tensor | None  # each query's own index row, when the queries come from the indexed split
    images: Any  # readable file paths, or the selected dataset rows
    skipped: list[dict[str, str]]


def _image_queries(args: Any) -> _Queries:
    check = _readable_queries(args.images, args.on_error or "stop")
    entries = [{"path": path} for path in check.good]
    return _Queries(entries, [None] * len(entries), None, check.good, [item.as_dict() for item in check.bad])


def _dataset_queries(args: Any, gallery: dict[str, Any]) -> _Queries:
    dataset = load_split(args.query_dataset, args.query_split, _split_record(gallery), _on_error(args, gallery))
    rows = _query_rows(dataset, args.query_rows)
    subset = dataset.select(rows)
    described = dataset_rows(args.query_dataset, args.query_split, subset)
    entries = [{"row": row, **_without_row(describe_row(described, i))} for i, row in enumerate(rows)]
    indexed = (gallery.get("dataset"), gallery.get("split"))
    same_split = gallery["source"] == "dataset" and indexed == (os.path.abspath(args.query_dataset), args.query_split)
    classes = [class_of(described, i) for i in range(len(rows))]
    return _Queries(entries, classes, torch.tensor(rows) if same_split else None, subset, [])


def _embed(model: Any, transform: Any, queries: _Queries, batch_size: int) -> torch.Tensor:
    if queries.entries and "path" in queries.entries[0]:
        checked = FolderCheck(list(queries.images), [])
        return embed_folder(model, "", transform, checked=checked, batch_size=batch_size, progress=False)[0]
    return embed_dataset(model, queries.images, transform, batch_size=batch_size, progress=False)


def _add_results(queries: _Queries, gallery: dict[str, Any], scores: torch.Tensor, found: torch.Tensor) -> None:
    """Each query's results: rank, row (and path), score, the row's columns; ``match`` where both labels are known."""
    for entry, query_class, row_scores, row_found in zip(
        queries.entries, queries.classes, scores.tolist(), found.tolist()
    ):
        entry["results"] = []
        for rank, (score, row) in enumerate(zip(row_scores, row_found), start=1):
            if row < 0:  # an approximate search found fewer than k rows
                continue
            fields = describe_row(gallery, row)
            where = {name: fields.pop(name) for name in ("row", "path") if name in fields}
            result = {"rank": rank, **where, "score": score, **fields}
            result_class = class_of(gallery, row)
            if query_class is not None and result_class is not None:
                result["match"] = result_class == query_class
            entry["results"].append(result)


def run_query(args: Any) -> dict[str, Any]:
    """Search ``args.index`` for the query images; print or write the results, draw the grid; return the results."""
    _check_outputs(args)
    index, manifest = open_index_folder(args.index)
    index.search_parameters(ef_search=args.ef_search, nprobe=args.nprobe)
    adapter = query_adapter(manifest["model"], args.adapter)
    gallery = manifest["gallery"]
    queries = _image_queries(args) if args.images else _dataset_queries(args, gallery)
    searchable = index.num_vectors - (queries.exclude is not None)
    if args.k > searchable:
        raise InvalidInputError(f"--k {args.k} exceeds the {searchable} index rows a query can retrieve.")

    model, _, _ = load_model(manifest["model"], adapter)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    embeddings = _embed(model, transform_from_record(manifest["preprocessing"]), queries, args.batch_size)
    scores, found = index.search(
        embeddings, args.k, exclude=queries.exclude, ef_search=args.ef_search, nprobe=args.nprobe
    )
    _add_results(queries, gallery, scores, found)
    results = {
        RESULTS_KEY: RESULTS_VERSION,
        "index": os.path.abspath(args.index),
        "index_type": manifest["index"]["type"],
        "k": args.k,
        "leave_one_out": queries.exclude is not None,
        "skipped": queries.skipped,
        "queries": queries.entries,
    }
    if args.output:
        write_json_atomically(args.output, results)
        print(f"results of {len(queries.entries)} queries written to {args.output}")
    else:
        print(json.dumps(results, indent=1))
    if args.grid:
        save_grid(contact_sheet(_tiles(results, queries.images, gallery), args.thumbnail_size), args.grid)
        print(f"grid of {len(queries.entries)} x {args.k + 1} tiles written to {args.grid}", file=sys.stderr)
    return results


def _without_row(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if name != "row"}


def _detail(entry: dict[str, Any]) -> str:
    """The second caption line of a tile: the collection and class name where known, else the label, else the file
    name, else the row."""
    if "class_name" in entry:
        return f"{entry['dataset']}/{entry['class_name']}" if "dataset" in entry else entry["class_name"]
    if "label" in entry:
        return f"label {entry['label']}"
    return os.path.basename(entry["path"]) if "path" in entry else f"row {entry['row']}"


def _tiles(results: dict[str, Any], query_images: Any, gallery: dict[str, Any]) -> list[list[Tile]]:
    """One row of tiles per query: the query (blue), then its results (green / red / grey) with rank and score."""
    from PIL import Image

    images = RowImages(gallery)
    rows = []
    for index, query in enumerate(results["queries"]):
        if "path" in query:
            with Image.open(query["path"]) as opened:
                image = opened.convert("RGB")
        else:
            image = query_images[index]["image"].convert("RGB")
        tiles = [Tile(image, "query", _detail(query), "query")]
        for result in query["results"]:
            frame = {True: "match", False: "miss"}.get(result.get("match"))
            tiles.append(
                Tile(images(result["row"]), f"#{result['rank']} {result['score']:.3f}", _detail(result), frame)
            )
        rows.append(tiles)
    return rows
