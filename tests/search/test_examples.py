"""Retrieval examples of an evaluation: the same seeded queries for every model, their neighbours in the unified
gallery without themselves, and one sheet row per query and model (docs/search.md, "Retrieval examples")."""

from __future__ import annotations

import datasets
import torch
from PIL import Image

from peft_puma.data.schema import column_values
from peft_puma.evaluation.examples import example_tiles, pick_queries, write_retrieval_examples
from peft_puma.evaluation.grid import COLOURS, DEFAULT_THUMBNAIL, FRAME, GAP, grid_size


def _test_split(tiny) -> datasets.Dataset:
    return datasets.load_from_disk(tiny["dataset"])["test"]


def _label_embeddings(test: datasets.Dataset) -> torch.Tensor:
    """Embeddings that put every image next to the others of its class: every neighbour is a match."""
    labels = torch.tensor(column_values(test, "label"))
    one_hot = torch.nn.functional.one_hot(labels - labels.min()).float()
    return one_hot + 0.01 * torch.randn(one_hot.shape, generator=torch.Generator().manual_seed(0))


def test_queries_are_seeded_per_dataset_and_never_gallery_only_rows(tiny):
    test = _test_split(tiny)
    domains, roles = column_values(test, "dataset"), column_values(test, "role")
    queries = pick_queries(domains, roles, per_dataset=2, seed=0)
    assert queries == pick_queries(domains, roles, per_dataset=2, seed=0)
    assert queries != pick_queries(domains, roles, per_dataset=2, seed=1)
    assert [domains[row] for row in queries] == ["stripes", "stripes", "colours", "colours", "shop", "shop"]
    assert all(roles[row] in ("both", "query") for row in queries)


def test_neighbours_come_from_the_unified_gallery_without_the_query(tiny):
    test = _test_split(tiny)
    queries = pick_queries(column_values(test, "dataset"), column_values(test, "role"), 2, 0)
    tiles = example_tiles({"model": _label_embeddings(test)}, test, queries, k=2)
    assert len(tiles) == len(queries) and all(len(row) == 3 for row in tiles)
    assert all(row[0].frame == "query" for row in tiles)
    assert all(tile.frame == "match" for row in tiles for tile in row[1:])  # class neighbours, the query left out
    shuffled = _label_embeddings(test)[torch.randperm(test.num_rows, generator=torch.Generator().manual_seed(3))]
    mixed = example_tiles({"model": shuffled}, test, queries, k=2)
    assert any(tile.frame == "miss" for row in mixed for tile in row[1:])


def test_a_comparison_sheet_has_one_row_per_query_and_model(tiny, tmp_path):
    test = _test_split(tiny)
    good = _label_embeddings(test)
    path = write_retrieval_examples(
        str(tmp_path / "examples.png"), {"frozen": torch.randn(good.shape), "PUMA": good}, test, k=3, per_dataset=1
    )
    with Image.open(path) as sheet:
        assert sheet.size == grid_size(3 * 2, 1 + 3, DEFAULT_THUMBNAIL)
        width, height = sheet.size[0] // 4, sheet.size[1] // 6
        assert sheet.getpixel((GAP + 1, GAP + 1)) == COLOURS["query"]
        assert sheet.getpixel((width + GAP + FRAME // 2, height + GAP + 1)) == COLOURS["match"]  # PUMA's first hit
