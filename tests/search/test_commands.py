"""``python -m peft_puma.search index`` and ``query`` on the tiny run: results and their JSON, the identity check,
the one-line errors with exit status 2, and the rule of docs/safety.md for the index folder (docs/search.md)."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from PIL import Image
from training.conftest import run_module

from peft_puma.search import MANIFEST, open_index_folder
from peft_puma.search.cli import main
from search.conftest import error_line

RESULT_FIELDS = {"rank", "row", "score"}


def _query(capsys, *argv: str) -> dict:
    assert main(["query", *argv]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _fails(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    return error_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------------------------ results and JSON
def test_query_rows_of_the_indexed_split_json_schema(tiny, test_index, capsys):
    results = _query(capsys, "--index", test_index, "--query_dataset", tiny["dataset"], "--query_rows", "0", "13", "30")
    assert set(results) == {"peft_puma_search", "index", "index_type", "k", "leave_one_out", "skipped", "queries"}
    assert results["peft_puma_search"] == 1 and results["k"] == 10 and results["index_type"] == "flat"
    assert results["leave_one_out"] is True and results["index"] == os.path.abspath(test_index)
    index, manifest = open_index_folder(test_index)
    _, expected = index.search(index.vectors()[[0, 13, 30]], 10, exclude=[0, 13, 30])
    labels = manifest["gallery"]["labels"]
    for query, row, nearest in zip(results["queries"], [0, 13, 30], expected.tolist()):
        assert query["row"] == row and query["label"] == labels[row]
        assert {"dataset", "role"} <= set(query)
        assert [result["rank"] for result in query["results"]] == list(range(1, 11))
        assert [result["row"] for result in query["results"]] == nearest  # the exact search; never the query itself
        scores = [result["score"] for result in query["results"]]
        assert scores == sorted(scores, reverse=True) and all(-1.0001 <= score <= 1.0001 for score in scores)
        for result in query["results"]:
            assert set(result) == RESULT_FIELDS | {"label", "dataset", "role", "match"}
            assert result["match"] is (result["label"] == query["label"])
    assert results["queries"][0]["results"][0]["match"]  # the trained tiny model finds its class first


def test_index_a_folder_with_hnsw_and_query_image_files(photos, tiny, tmp_path, capsys):
    output = str(tmp_path / "photos_index")
    assert main(["index", "--adapter", tiny["run"], "--images", photos, "--output", output, "--index", "hnsw"]) == 0
    assert "39 images indexed (hnsw, 16 dimensions)" in capsys.readouterr().out
    manifest = json.load(open(os.path.join(output, MANIFEST), encoding="utf-8"))
    assert manifest["index"]["params"] == {"hnsw_m": 32, "ef_construction": 100, "ef_search": 128}
    gallery = manifest["gallery"]
    assert gallery["source"] == "images" and gallery["folder"] == photos and gallery["num_rows"] == 39
    assert gallery["skipped"] == [] and gallery["paths"][0] == os.path.join(
        "colours", sorted(os.listdir(os.path.join(photos, "colours")))[0]
    )
    queries = [os.path.join(photos, gallery["paths"][row]) for row in (0, 20)]
    results = _query(capsys, "--index", output, "--images", *queries, "--k", "3")
    assert results["leave_one_out"] is False
    for query, path in zip(results["queries"], queries):
        assert query["path"] == path and set(query) == {"path", "results"}
        first = query["results"][0]
        assert set(first) == RESULT_FIELDS | {"path", "class_name"}  # photos/<class>/<file>: one collection
        assert first["class_name"] == os.path.basename(os.path.dirname(first["path"]))
        assert first["path"] == path and first["score"] == pytest.approx(1.0, abs=1e-5)  # the image itself


def test_a_zero_shot_index_and_its_queries(tiny, photos, tmp_path, capsys):
    output = str(tmp_path / "zero_shot")
    argv = ["index", "--zero_shot", "--backbone", tiny["backbone"], "--images", photos, "--output", output]
    assert main(argv) == 0
    capsys.readouterr()
    model = json.load(open(os.path.join(output, MANIFEST), encoding="utf-8"))["model"]
    assert model["adapter"] is None and model["zero_shot"] is True and model["backbone"] == tiny["backbone"]
    assert set(model["backbone_files"]) == {"config.json", "model.safetensors", "preprocessor_config.json"}
    query = os.path.join(photos, "shop", sorted(os.listdir(os.path.join(photos, "shop")))[0])
    assert _query(capsys, "--index", output, "--images", query, "--k", "1")["queries"][0]["results"][0]["path"] == query
    line = _fails(capsys, "query", "--index", output, "--images", query, "--adapter", tiny["run"])
    assert "built zero-shot" in line


# ------------------------------------------------------------------------------------------------ identity check
def _change_weights(adapter: str) -> None:
    from safetensors.torch import load_file, save_file

    path = os.path.join(adapter, "adapter_model.safetensors")
    tensors = load_file(path)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, path)


def test_the_same_adapter_is_accepted_from_a_copy_and_another_is_refused(tiny, test_index, run_copy, capsys):
    argv = ["--index", test_index, "--query_dataset", tiny["dataset"], "--query_rows", "1", "--k", "2"]
    recorded = _query(capsys, *argv)
    assert _query(capsys, *argv, "--adapter", run_copy) == recorded  # a copy of the same files is the same model
    _change_weights(run_copy)
    line = _fails(capsys, "query", *argv, "--adapter", run_copy)
    assert f"--adapter {run_copy} is not the adapter this index was built with ({tiny['run']}" in line
    assert "adapter_model.safetensors differ" in line


def test_an_adapter_changed_since_indexing_is_refused(tiny, run_copy, tmp_path, capsys):
    output = str(tmp_path / "index")
    assert main(["index", "--adapter", run_copy, "--dataset", tiny["dataset"], "--output", output]) == 0
    _change_weights(run_copy)
    argv = ["query", "--index", output, "--query_dataset", tiny["dataset"], "--query_rows", "1"]
    line = _fails(capsys, *argv)
    assert f"The adapter in {run_copy} changed since this index was built" in line
    os.rename(run_copy, run_copy + "_moved")
    assert f"{run_copy}, no longer exists; pass a copy of it with --adapter" in _fails(capsys, *argv)


# ------------------------------------------------------------------------------------------------ mistakes
def test_query_mistakes_exit_2_with_one_error_line(tiny, test_index, photos, tmp_path, capsys):
    query = ["query", "--index", test_index, "--query_dataset", tiny["dataset"], "--query_rows", "0"]
    not_an_index = tmp_path / "notes"
    not_an_index.mkdir()
    (not_an_index / "a.txt").write_text("mine")
    cases = {
        ("query", "--index", str(tmp_path / "missing"), "--images", photos): "does not exist",
        ("query", "--index", str(not_an_index), "--images", photos): "is not a search index (no peft_puma_index.json)",
        (*query, "--k", "0"): "--k must be at least 1; got 0",
        (*query, "--k", "39"): "--k 39 exceeds the 38 index rows",
        (*query[:-1], "39"): "--query_rows [39] outside the split's rows 0 .. 38",
        (*query, "--thumbnail_size", "32"): "--thumbnail_size must be at least 64",
        (*query, "--nprobe", "4"): "nprobe do(es) not apply to a 'flat' index",
    }
    for argv, expected in cases.items():
        assert expected in _fails(capsys, *argv), argv
    assert sorted(os.listdir(not_an_index)) == ["a.txt"]


def test_unreadable_query_images_stop_or_are_skipped(test_index, photos, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    good = os.path.join(photos, "shop", sorted(os.listdir(os.path.join(photos, "shop")))[0])
    argv = ["query", "--index", test_index, "--images", good, str(bad), str(tmp_path / "gone.png"), "--k", "2"]
    line = _fails(capsys, *argv)
    assert f"Cannot read the query image {str(bad)!r}" in line and "(1 more unreadable)" in line
    assert "--on_error skip" in line
    assert main([*argv, "--on_error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "skipped 2 of 3 query image(s)" in captured.err
    results = json.loads(captured.out)
    assert [query["path"] for query in results["queries"]] == [good]
    assert [item["path"] for item in results["skipped"]] == [str(bad), str(tmp_path / "gone.png")]
    assert "None of the 2 query image(s) can be read" in _fails(
        capsys, "query", "--index", test_index, "--images", str(bad), str(tmp_path / "gone.png")
    )


def test_results_and_grid_files_are_written_only_over_our_own(tiny, test_index, tmp_path, capsys):
    argv = ["query", "--index", test_index, "--query_dataset", tiny["dataset"], "--query_rows", "2", "--k", "2"]
    notes, picture = tmp_path / "notes.json", tmp_path / "holiday.png"
    notes.write_text('{"mine": true}')
    Image.new("RGB", (4, 4)).save(picture)
    assert "is not search results written by peft_puma" in _fails(capsys, *argv, "--output", str(notes))
    assert "is not a grid written by peft_puma" in _fails(capsys, *argv, "--grid", str(picture))
    assert notes.read_text() == '{"mine": true}' and Image.open(picture).size == (4, 4)
    output, grid = tmp_path / "results.json", tmp_path / "grid.png"
    for _ in range(2):  # the second time over its own files
        assert main([*argv, "--output", str(output), "--grid", str(grid)]) == 0
    assert json.loads(output.read_text())["queries"][0]["row"] == 2
    assert "results of 1 queries written" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ the index folder
def test_the_index_folder_is_new_empty_or_an_index(tiny, tmp_path, capsys):
    base = ["index", "--adapter", tiny["run"], "--dataset", tiny["dataset"], "--output"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    assert "does not hold a peft_puma search index" in _fails(capsys, *base, str(foreign))
    assert sorted(os.listdir(foreign)) == ["notes.txt"] and (foreign / "notes.txt").read_text() == "keep"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "is a file, not a folder" in _fails(capsys, *base, str(a_file))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*base, str(empty)]) == 0
    first = json.load(open(empty / MANIFEST, encoding="utf-8"))
    assert main([*base, str(empty), "--index", "ivf", "--nlist", "2"]) == 0  # its own index: replaced
    second = json.load(open(empty / MANIFEST, encoding="utf-8"))
    assert (first["index"]["type"], second["index"]["type"]) == ("flat", "ivf")
    assert second["index"]["params"] == {"nlist": 2, "nprobe": 2}
    assert sorted(os.listdir(empty)) == ["index.faiss", MANIFEST]
    assert sorted(os.listdir(tmp_path)) == ["empty", "file", "mine"]  # no staging or aside folder left behind
    (empty / "extra.txt").write_text("mine")
    assert "also files peft_puma did not write (extra.txt)" in _fails(capsys, *base, str(empty))
    assert sorted(os.listdir(empty)) == ["extra.txt", "index.faiss", MANIFEST]


def test_index_mistakes_exit_2_before_the_model_loads(tiny, photos, tmp_path, capsys, monkeypatch):
    import peft_puma.inference.loading as inference

    monkeypatch.setattr(inference, "load_for_inference", lambda *a, **k: pytest.fail("the model was loaded"))
    output = str(tmp_path / "index")
    base = ["index", "--adapter", tiny["run"], "--output", output]
    cases = {
        (*base, "--images", photos, "--index", "hnsw", "--nlist", "4"): "nlist do(es) not apply to a 'hnsw' index",
        (*base, "--images", photos, "--ef_search", "0", "--index", "hnsw"): "ef_search must be a positive integer",
        (*base, "--images", str(tmp_path / "none")): "does not exist",
        (*base, "--dataset", tiny["dataset"], "--split", "valid"): "not 'valid'",
        ("index", "--images", photos, "--output", output): "Give --adapter RUN",
        ("index", "--adapter", str(tmp_path / "no_run"), "--images", photos, "--output", output): "does not exist",
    }
    for argv, expected in cases.items():
        assert expected in _fails(capsys, *argv), argv
    assert not os.path.exists(output)


def test_the_command_line_exit_status_and_message(tmp_path):
    done = run_module(
        [sys.executable, "-m", "peft_puma.search", "query", "--index", str(tmp_path / "x"), "--images", "q.png"]
    )
    assert done.returncode == 2
    assert "does not exist; build it with the index sub-command" in error_line(done.stderr)


@pytest.mark.slow
def test_two_processes_build_the_index_of_one(tiny, photos, tmp_path):
    from training.test_distributed import _launch

    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    argv = ["index", "--adapter", tiny["run"], "--images", photos, "--batch_size", "4", "--output"]
    assert main([*argv, one]) == 0
    done = run_module([*_launch(), "-m", "peft_puma.search", *argv, two])
    assert done.returncode == 0, done.stderr[-3000:]
    (single, first), (double, second) = open_index_folder(one), open_index_folder(two)
    assert first["gallery"] == second["gallery"]
    torch.testing.assert_close(single.vectors(), double.vectors())


# ------------------------------------------------------------------------------------------- faults and look-alikes
def test_a_second_index_build_into_a_folder_in_use_is_refused(tiny, tmp_path, capsys):
    from peft_puma.runs.lock import FolderLock
    from peft_puma.search.folder import index_lock_path

    output = str(tmp_path / "busy_index")
    with FolderLock(index_lock_path(output), "another index build"):
        line = _fails(capsys, "index", "--adapter", tiny["run"], "--dataset", tiny["dataset"], "--output", output)
    assert line.startswith(f"error: {output} is in use by another index build (process {os.getpid()}")  # not its parent
    assert not os.path.exists(output)


def test_the_note_after_a_killed_index_build_names_the_index_folder(tiny, tmp_path, capsys):
    from peft_puma.search.folder import index_lock_path

    output = str(tmp_path / "index_after_kill")
    with open(index_lock_path(output), "w", encoding="utf-8") as handle:  # what a kill -9 leaves: a holder's record
        json.dump({"pid": 4242, "host": "h", "since": "earlier"}, handle)
    assert main(["index", "--adapter", tiny["run"], "--dataset", tiny["dataset"], "--output", output]) == 0
    assert f"note: {output} was last locked by process 4242 on h" in capsys.readouterr().out


def test_impossible_index_numbers_are_refused_before_any_work(photos, tmp_path, capsys):
    base = ["index", "--zero_shot", "--backbone", "b", "--images", photos, "--output", str(tmp_path / "x")]
    assert _fails(capsys, *base, "--batch_size", "-1") == "error: --batch_size must be at least 1; got -1."
    assert _fails(capsys, *base, "--image_size", "3") == "error: --image_size must be at least 16; got 3."
