"""UML-mini's folder: a user's files are never removed, a build is read as built, and --force replaces only ours."""

from __future__ import annotations

import json
import os

import datasets
import pytest

from peft_puma.data import uml_mini
from peft_puma.data.uml_mini import (
    MANIFEST,
    UMLMiniConfig,
    load_or_build_uml_mini,
    open_uml_mini,
)
from peft_puma.data.uml_mini.__main__ import main
from peft_puma.errors import DatasetLayoutError, ForeignContentError

SEED_7 = UMLMiniConfig(seed=7, scale=0.03)
DEFAULT = UMLMiniConfig()


@pytest.fixture(scope="module")
def seed_7_build(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("uml7") / "uml")
    load_or_build_uml_mini(out, SEED_7)
    return out


def _snapshot(folder: str) -> dict[str, int]:
    return {
        os.path.relpath(os.path.join(root, name), folder): os.stat(os.path.join(root, name)).st_mtime_ns
        for root, _, files in os.walk(folder)
        for name in files
    }


def test_command_refuses_a_folder_of_user_files_and_touches_nothing(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "my_notes.txt").write_text("keep me")
    assert main(["--output_dir", str(folder), "--scale", "0.03"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and str(folder) in error and len(error.strip().splitlines()) == 1
    assert os.listdir(folder) == ["my_notes.txt"] and (folder / "my_notes.txt").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["mine"]  # no staging folder left beside it


def test_command_refuses_a_file_as_output_dir(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["--output_dir", str(tmp_path / "file"), "--scale", "0.03"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_a_build_of_another_seed_is_kept_unless_forced(seed_7_build, capsys):
    before = _snapshot(seed_7_build)
    assert main(["--output_dir", seed_7_build, "--scale", str(SEED_7.scale)]) == 2  # seed 0 asked for
    error = capsys.readouterr().err
    assert "seed 7" in error and "--force" in error
    assert _snapshot(seed_7_build) == before


def test_open_reads_a_build_as_built(seed_7_build):
    dataset, manifest = open_uml_mini(seed_7_build)
    assert manifest["config"] == {"seed": 7, "scale": SEED_7.scale}
    assert dataset["test"].data.equals(datasets.load_from_disk(seed_7_build)["test"].data)


def test_force_rebuilds_our_own_build(tmp_path):
    out = str(tmp_path / "uml")
    load_or_build_uml_mini(out, SEED_7)
    assert main(["--output_dir", out, "--seed", "8", "--scale", str(SEED_7.scale), "--force"]) == 0
    assert open_uml_mini(out)[1]["config"]["seed"] == 8
    assert sorted(os.listdir(tmp_path)) == ["uml"]


def test_force_never_removes_user_files(seed_7_build, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "my_notes.txt").write_text("keep me")
    with pytest.raises(ForeignContentError):
        load_or_build_uml_mini(str(folder), SEED_7, force=True)
    assert os.listdir(folder) == ["my_notes.txt"]


def test_an_interrupted_build_keeps_the_previous_complete_one(tmp_path, monkeypatch):
    out = str(tmp_path / "uml")
    load_or_build_uml_mini(out, SEED_7)
    before = _snapshot(out)

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", crash)
    with pytest.raises(KeyboardInterrupt):
        load_or_build_uml_mini(out, UMLMiniConfig(seed=8, scale=SEED_7.scale), force=True)
    assert _snapshot(out) == before
    assert sorted(os.listdir(tmp_path)) == ["uml"]


def test_an_older_builder_version_is_an_error_naming_the_rebuild_command(seed_7_build, tmp_path):
    copy = tmp_path / "old"
    copy.mkdir()
    manifest = json.loads((open(os.path.join(seed_7_build, MANIFEST), encoding="utf-8")).read())
    (copy / MANIFEST).write_text(json.dumps({**manifest, "builder_version": uml_mini.BUILDER_VERSION - 1}))
    (copy / "dataset_dict.json").write_text("{}")
    with pytest.raises(DatasetLayoutError, match=r"--output_dir .*old --seed 7 --scale 0.03 --force"):
        open_uml_mini(str(copy))
    assert sorted(os.listdir(copy)) == ["dataset_dict.json", MANIFEST]


def test_an_incomplete_build_is_an_error_not_a_silent_rebuild(tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / MANIFEST).write_text("{not json")
    with pytest.raises(DatasetLayoutError, match="incomplete UML-mini build"):
        open_uml_mini(str(folder))
    assert os.listdir(folder) == [MANIFEST]


def test_open_builds_the_default_where_the_folder_does_not_exist(tmp_path, monkeypatch):
    built = []

    def fake_build(out, config=DEFAULT, **options):
        built.append((out, config))
        return datasets.DatasetDict(), {"config": {"seed": config.seed, "scale": config.scale}}, False

    monkeypatch.setattr(uml_mini, "load_or_build_uml_mini", fake_build)
    open_uml_mini(str(tmp_path / "new"))
    assert built == [(str(tmp_path / "new"), UMLMiniConfig())]
