"""The trainer and evaluate read a UML-mini folder as it was built, record which build it was, and never build over a
folder of someone else's files."""

from __future__ import annotations

import json
import os

from peft_puma import evaluate, train
from peft_puma.data.uml_mini import BUILDER_VERSION, UMLMiniConfig, load_or_build_uml_mini

from .fixtures import tiny_config

SEED_7 = UMLMiniConfig(seed=7, scale=0.03)


def test_a_seed_7_build_stays_seed_7_and_the_run_records_it(tiny_assets, tmp_path, capsys):
    folder = str(tmp_path / "uml")
    load_or_build_uml_mini(folder, SEED_7)
    before = sorted(os.listdir(folder))
    values = tiny_config(tiny_assets["backbone"], None, output_dir=str(tmp_path / "run"), uml_mini_dir=folder)
    values = {key: value for key, value in values.items() if value is not None}
    argv = [f"--{key}={json.dumps(value)}" for key, value in {**values, "max_steps": 1}.items()]
    assert train.main(argv) == 0
    assert "seed 7, scale 0.03" in capsys.readouterr().out  # the start-up summary names the build
    expected = {"uml_mini_dir": folder, "builder_version": BUILDER_VERSION, "seed": 7, "scale": 0.03}
    with open(tmp_path / "run" / "peft_puma_training.json") as handle:
        assert json.load(handle)["data_source"] == expected
    with open(tmp_path / "run" / "results.json") as handle:
        assert json.load(handle)["data_source"] == expected
    assert sorted(os.listdir(folder)) == before
    with open(os.path.join(folder, "uml_mini.json")) as handle:
        assert json.load(handle)["config"] == {"seed": 7, "scale": 0.03}


def test_evaluate_refuses_a_user_folder_as_uml_mini_dir(tiny_assets, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "my_notes.txt").write_text("keep me")
    argv = ["--zero_shot", "--backbone", tiny_assets["backbone"], "--uml_mini_dir", str(folder)]
    assert evaluate.main(argv) == 2
    assert "does not hold a UML-mini build" in capsys.readouterr().err
    assert os.listdir(folder) == ["my_notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["mine"]
