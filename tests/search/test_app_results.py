"""What the search app shows, without a browser: :class:`IndexSearch` on the tiny run's indexes gives the ``query``
command's neighbours, names and collections, right/wrong marks for a query picked from a labelled index, per-collection
lists, and clear errors (docs/search.md, "The app")."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image

from peft_puma.errors import IncompatibleCheckpointError, InvalidInputError
from peft_puma.search import open_index_folder
from peft_puma.search.app_results import THUMBNAIL, Hit, IndexSearch, checked_k, open_query_image
from peft_puma.search.cli import main


@pytest.fixture(scope="module")
def dataset_search(test_index) -> IndexSearch:
    return IndexSearch(test_index)


@pytest.fixture(scope="module")
def photos_index(tiny, photos, tmp_path_factory) -> str:
    output = str(tmp_path_factory.mktemp("app") / "photos_index")
    assert main(["index", "--adapter", tiny["run"], "--images", photos, "--output_dir", output]) == 0
    return output


def test_a_gallery_row_query_gives_the_exact_search_without_itself_marked_right_or_wrong(dataset_search, test_index):
    index, manifest = open_index_folder(test_index)
    scores, rows = index.search(index.vectors()[[13]], 5, exclude=[13])
    hits = dataset_search.search(dataset_search.row_image(13), 5, query_row=13)
    assert [hit.row for hit in hits] == rows[0].tolist() and 13 not in [hit.row for hit in hits]
    assert [hit.score for hit in hits] == pytest.approx(scores[0].tolist(), abs=1e-5)
    assert [hit.rank for hit in hits] == [1, 2, 3, 4, 5]
    gallery = manifest["gallery"]
    for hit in hits:
        same = (gallery["datasets"][hit.row], gallery["labels"][hit.row]) == (
            gallery["datasets"][13],
            gallery["labels"][13],
        )
        assert hit.match is same
        assert hit.name == f"label {gallery['labels'][hit.row]}" and hit.collection == gallery["datasets"][hit.row]
    assert dataset_search.query_label(13) == f"label {gallery['labels'][13]} · {gallery['datasets'][13]}"


def test_an_uploaded_image_is_embedded_like_the_query_command(dataset_search, photos, test_index, tmp_path, capsys):
    path = os.path.join(photos, "colours", sorted(os.listdir(os.path.join(photos, "colours")))[0])
    hits = dataset_search.search(open_query_image(path), 4)
    assert main(["query", "--index", test_index, "--images", path, "--k", "4"]) == 0
    expected = json.loads(capsys.readouterr().out)["queries"][0]["results"]
    assert [hit.row for hit in hits] == [result["row"] for result in expected]
    assert [hit.score for hit in hits] == pytest.approx([result["score"] for result in expected], abs=1e-5)
    assert all(hit.match is None for hit in hits)  # an upload has no class


def test_each_collection_gets_its_own_nearest_rows(dataset_search):
    image = dataset_search.row_image(0)
    everything = dataset_search.search(image, dataset_search.index.num_vectors - 1, query_row=0)
    per_collection = dataset_search.search_collections(image, 3, query_row=0)
    assert sorted(per_collection) == dataset_search.collections and len(dataset_search.collections) > 1
    for name, hits in per_collection.items():
        expected = [hit.row for hit in everything if hit.collection == name][:3]
        assert [hit.row for hit in hits] == expected and [hit.rank for hit in hits] == list(range(1, len(hits) + 1))
    only = dataset_search.search(image, 3, query_row=0, collection=dataset_search.collections[1])
    assert [hit.row for hit in only] == [hit.row for hit in per_collection[dataset_search.collections[1]]]


def test_an_approximate_index_filtered_to_a_collection_returns_only_that_collection(tiny, tmp_path):
    output = str(tmp_path / "hnsw")
    argv = ["index", "--adapter", tiny["run"], "--dataset", tiny["dataset"], "--split", "test"]
    assert main([*argv, "--output_dir", output, "--index", "hnsw"]) == 0
    search = IndexSearch(output)
    name = search.collections[-1]
    hits = search.search(search.row_image(0), 3, query_row=0, collection=name)
    assert len(hits) == 3 and {hit.collection for hit in hits} == {name} and 0 not in [hit.row for hit in hits]


def test_a_folder_index_names_its_rows_by_class_or_file_and_collection(photos_index, photos):
    search = IndexSearch(photos_index)
    hits = search.search(search.row_image(0), 3)
    first = search.described[0]
    assert hits[0].row == 0 and hits[0].match is None
    if first.get("class_name") is None:  # no classes read from the folder: file names, subfolders as collections
        assert hits[0].name == os.path.basename(first["path"]) and search.collections == sorted(os.listdir(photos))
        assert hits[0].collection == os.path.basename(os.path.dirname(first["path"]))
    else:  # the rows name each image's class (and collection, where the tree has several)
        assert hits[0].name == first["class_name"] and hits[0].collection == first.get("dataset")


def test_a_caption_shows_the_mark_score_name_and_collection():
    assert Hit(4, 1, 0.95312, "label 3", "colours", True).caption() == "✓ 0.953 · label 3 · colours"
    assert Hit(4, 2, 0.5, "a.png", None, None).caption() == "0.500 · a.png"
    assert Hit(4, 3, 0.5, "label 1", "shapes", False).caption() == "✗ 0.500 · label 1 · shapes"


def test_a_thumbnail_fits_the_thumbnail_size(dataset_search):
    assert max(dataset_search.thumbnail(0).size) <= THUMBNAIL


def test_a_thumbnail_file_is_written_once_and_then_only_read(dataset_search):
    """Concurrent pages showing one neighbour must never read a thumbnail while it is rewritten: the file is made the
    first time (renamed into place) and the same file, untouched, is handed out after."""
    path = dataset_search.thumbnail_file(3)
    first = os.stat(path)
    assert Image.open(path).size == dataset_search.thumbnail(3).size
    assert dataset_search.thumbnail_file(3) == path
    again = os.stat(path)
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)


def test_a_file_that_is_not_an_image_is_one_clear_error(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(InvalidInputError, match=r"notes\.txt is not an image this app can read; upload a JPEG"):
        open_query_image(str(text))
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    assert open_query_image(str(tmp_path / "ok.png")).mode == "RGB"


@pytest.mark.parametrize("k", [0, 51, 2.5, "ten", None])
def test_k_outside_1_to_the_limit_is_refused(k):
    with pytest.raises(InvalidInputError, match="k must be a whole number between 1 and 50"):
        checked_k(k)


def test_an_unknown_collection_or_row_is_refused(dataset_search):
    with pytest.raises(InvalidInputError, match="No collection 'birds' in this index; its collections: "):
        dataset_search.search(dataset_search.row_image(0), 3, collection="birds")
    with pytest.raises(InvalidInputError, match="Gallery row 999 is outside"):
        dataset_search.row_image(999)


def test_an_index_of_a_changed_adapter_is_refused(test_index, run_copy):
    with pytest.raises(IncompatibleCheckpointError, match="is not the adapter this index was built with"):
        state = os.path.join(run_copy, "adapter_model.safetensors")
        with open(state, "ab") as handle:
            handle.write(b"\0")
        IndexSearch(test_index, adapter=run_copy)


def test_the_compared_index_shares_rows_only_when_it_holds_the_same_images(dataset_search, photos_index):
    other = IndexSearch(photos_index)
    assert dataset_search.shared_row(dataset_search, 7) == 7
    assert dataset_search.shared_row(other, 7) is None


def test_the_picks_spread_over_every_collection(dataset_search):
    rows = dataset_search.sample_rows(6)
    assert len(rows) == 6 and len(set(rows)) == 6
    assert {dataset_search.collection_of_row[row] for row in rows} == set(dataset_search.collections)
    assert torch.equal(torch.tensor(rows), torch.tensor(dataset_search.sample_rows(6)))  # the same every time
