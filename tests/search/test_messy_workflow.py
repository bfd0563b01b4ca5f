"""The documented collection workflow on a user's folder as it comes (docs/collections.md): one ``train --on_error
skip`` trains and lists every problem at once; ``evaluate``, ``embed``, ``search index --dataset ... --split test``
and ``search query --query_dataset`` of that run on the same folder follow its choice, saying so, without another
flag; and every search result names its collection and class."""

from __future__ import annotations

import json
import os

import pytest
from training.fixtures import make_backbone, tiny_config

from peft_puma import embed, evaluate, train
from peft_puma.search.cli import main as search
from search.messy_tree import make_messy_tree


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("messy")
    tree = str(root / "collections")
    make_messy_tree(tree)
    backbone = make_backbone(str(root / "vit"))
    run = str(root / "run")
    values = tiny_config(backbone, tree, output_dir=run, on_error="skip", eval_ks=[1, 2], epochs=1)
    code = train.main([f"--{key}={json.dumps(value)}" for key, value in values.items()])
    return {"tree": tree, "run": run, "backbone": backbone, "root": str(root), "code": str(code)}


def test_train_on_error_skip_trains_on_a_messy_tree_and_records_the_choice(trained):
    assert trained["code"] == "0"
    with open(os.path.join(trained["run"], "peft_puma_training.json"), encoding="utf-8") as handle:
        run = json.load(handle)
    assert run["config"]["on_error"] == "skip" and run["data_source"]["unreadable_skipped"] == 3


def test_evaluate_embed_and_index_of_the_run_follow_its_on_error(trained, tmp_path, capsys):
    run, tree = trained["run"], trained["tree"]
    assert evaluate.main(["--adapter", run, "--dataset_path", tree]) == 0
    assert "note: on_error skip, as the run" in capsys.readouterr().err
    output = str(tmp_path / "test.safetensors")
    assert embed.main(["--adapter", run, "--dataset", tree, "--split", "test", "--output", output]) == 0
    assert "note: on_error skip, as the run" in capsys.readouterr().err
    index = str(tmp_path / "index")
    assert search(["index", "--adapter", run, "--dataset", tree, "--split", "test", "--output_dir", index]) == 0
    assert "note: on_error skip, as the run" in capsys.readouterr().err
    results = str(tmp_path / "results.json")
    query = ["query", "--index", index, "--query_dataset", tree, "--query_split", "test", "--query_rows", "0", "1"]
    assert search([*query, "--k", "2", "--output", results]) == 0
    with open(results, encoding="utf-8") as handle:
        found = json.load(handle)
    first = found["queries"][0]
    assert first["dataset"] in ("birds", "signs") and first["class_name"].startswith(first["dataset"])
    assert all(result["class_name"].startswith(result["dataset"]) for result in first["results"])


def test_the_choice_is_not_followed_on_other_data_and_on_error_is_accepted_with_dataset(trained, tmp_path, capsys):
    other = str(tmp_path / "other")
    make_messy_tree(other, bad_name=False, self_loop=False)
    output = str(tmp_path / "x.safetensors")
    argv = ["--adapter", trained["run"], "--dataset", other, "--split", "test", "--output", output]
    assert embed.main(argv) == 2
    err = capsys.readouterr().err
    assert "Use --on_error skip" in err and "note: on_error" not in err
    assert embed.main([*argv, "--on_error", "skip"]) == 0
