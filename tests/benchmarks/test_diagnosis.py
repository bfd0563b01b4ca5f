"""The diagnosis script's measurements (benchmarks/diagnosis.py): each pins what its number means on inputs whose
answer is known, so a wrong sign or a swapped denominator cannot pass."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def diagnosis():
    path = os.path.join(REPO, "benchmarks", "diagnosis.py")
    spec = importlib.util.spec_from_file_location("diagnosis_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _glyph(foreground: tuple[int, int, int], background: tuple[int, int, int]) -> np.ndarray:
    image = np.empty((16, 16, 3), dtype=np.float32)
    image[:] = background
    image[4:12, 6:10] = foreground  # the same "letter" wherever it is drawn
    return image


def test_removing_colour_maps_one_shape_in_any_colours_to_one_image(diagnosis):
    images = np.stack([_glyph((250, 20, 20), (10, 10, 90)), _glyph((0, 0, 0), (240, 240, 200))])
    ink = diagnosis.remove_colour(images)
    assert ink.dtype == np.uint8 and ink.shape == images.shape
    assert np.array_equal(ink[0], ink[1])
    assert ink[0, 0, 0, 0] == 255 and ink[0, 6, 7, 0] == 0  # white background, black letter


def test_background_colour_is_read_from_the_border(diagnosis):
    image = _glyph((255, 255, 255), (30, 60, 90))
    assert diagnosis.background_colours(image[None]).tolist() == [[30, 60, 90]]


def test_colour_reliance_is_near_zero_when_colour_decides_and_near_one_when_it_plays_no_part(diagnosis):
    rng = np.random.default_rng(0)
    background = rng.uniform(0, 255, size=(200, 3))
    domains = ["latin"] * 100 + ["greek"] * 100
    distance = np.linalg.norm(background[:, None] - background[None], axis=-1)
    by_colour = torch.from_numpy(np.exp(-((distance / 20) ** 2)))  # similar colours, similar embeddings
    blind = torch.from_numpy(rng.normal(size=(200, 16)))
    assert diagnosis.colour_reliance(by_colour, domains, background) < 0.3
    assert 0.8 < diagnosis.colour_reliance(blind, domains, background) < 1.2


def test_learning_curves_are_read_from_the_validation_lines_of_the_log(diagnosis, tmp_path):
    lines = [
        {"step": 10, "train/loss": 7.0},
        {"epoch": 1, "step": 10, "train/epoch_loss": 7.5},
        {"step": 10, "epoch": 1, "split": "validation", "validation/latin/recall@1": 0.1,
         "validation/unified/recall@1": 0.2},
        {"epoch": 2, "step": 20, "train/epoch_loss": 6.5},
        {"step": 20, "epoch": 2, "split": "validation", "validation/latin/recall@1": 0.3},
        {"step": 20, "epoch": 2, "split": "test", "eval/latin/recall@1": 0.9},
    ]  # fmt: skip
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    curves = diagnosis.read_curves(str(tmp_path))
    assert curves["epoch_loss"] == {1: 7.5, 2: 6.5}
    assert curves["validation"] == {
        1: {"latin": pytest.approx(10.0), "unified": pytest.approx(20.0)},
        2: {"latin": pytest.approx(30.0)},
    }
    figure = tmp_path / "curves.png"
    diagnosis.plot_curves(curves, {"latin": 12.0}, str(figure), "note")
    assert figure.stat().st_size > 1000


def test_a_run_without_validation_evaluations_is_refused_with_what_to_do(diagnosis, tmp_path):
    (tmp_path / "train_log.jsonl").write_text(json.dumps({"step": 10, "train/loss": 7.0}) + "\n")
    with pytest.raises(SystemExit, match="eval_every_epochs"):
        diagnosis.read_curves(str(tmp_path))


def test_frozen_scores_of_the_test_split_are_refused(diagnosis, tmp_path):
    path = tmp_path / "frozen.json"
    result = {"split": "test", "per_dataset": {}, "unified": {"recall@1": 0.1}, "harmonic": {"recall@1": 0.1}}
    path.write_text(json.dumps(result))
    with pytest.raises(SystemExit, match="test split"):
        diagnosis.read_frozen(str(path))


def _training_fixtures():
    spec = importlib.util.spec_from_file_location(
        "fixtures_for_diagnosis", os.path.join(REPO, "tests", "training", "fixtures.py")
    )
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    return fixtures


@pytest.fixture(scope="module")
def tiny_uml_mini_and_backbone(tmp_path_factory):
    from peft_puma.data.uml_mini import UMLMiniConfig, load_or_build_uml_mini

    root = tmp_path_factory.mktemp("diagnosis")
    load_or_build_uml_mini(str(root / "uml"), UMLMiniConfig(scale=0.03))
    return str(root / "uml"), _training_fixtures().make_backbone(str(root / "vit"))


@pytest.mark.parametrize("command", ["colour", "fit"])
def test_colour_and_fit_commands_write_a_table_per_model(diagnosis, tiny_uml_mini_and_backbone, tmp_path, command):
    uml_mini, backbone = tiny_uml_mini_and_backbone
    output = tmp_path / f"{command}.json"
    argv = [command, "--uml_mini_dir", uml_mini, "--backbone", backbone, "--output", str(output)]
    assert diagnosis.main(argv) == 0
    written = json.loads(output.read_text())
    assert written["benchmark"] == f"diagnosis {command}" and written["split"] == (
        "validation" if command == "colour" else "train"
    )
    frozen = written["models"]["frozen"]
    scores = (
        [*frozen["as rendered"].values(), *frozen["colour removed"].values()]
        if command == "colour"
        else list(frozen.values())
    )
    assert scores and all(0 <= value <= 100 for value in scores)
    if command == "colour":
        assert set(frozen["as rendered"]) == set(diagnosis.GLYPH_DOMAINS) and frozen["colour_reliance"] > 0


def test_domains_command_trains_each_domain_alone_and_sets_it_beside_the_unified_run(
    diagnosis, tiny_uml_mini_and_backbone, tmp_path
):
    from peft_puma.data.uml_mini import DOMAINS
    from peft_puma.training import load_config, train

    uml_mini, backbone = tiny_uml_mini_and_backbone
    fixtures = _training_fixtures()
    values = fixtures.tiny_config(backbone, None, uml_mini_dir=uml_mini, epochs=1, eval_ks=[1], save_every_steps=0)
    config = fixtures.write_config(str(tmp_path / "tiny.yaml"), {k: v for k, v in values.items() if v is not None})
    unified = str(tmp_path / "unified")
    train(load_config(config, {"output_dir": unified, "eval_split": "validation"}))
    output = tmp_path / "domains.json"
    argv = ["domains", "--config", config, "--runs_dir", str(tmp_path / "alone"), "--unified", unified]
    assert diagnosis.main([*argv, "--output", str(output)]) == 0
    written = json.loads(output.read_text())
    assert list(written["alone"]) == list(written["unified"]) == [domain.name for domain in DOMAINS]
    for name in written["alone"]:  # each domain's run saw that domain only, and was scored on validation
        with open(tmp_path / "alone" / name / "results.json") as handle:
            result = json.load(handle)
        assert result["split"] == "validation" and list(result["per_dataset"]) == [name]
        assert written["alone"][name] == pytest.approx(100 * result["per_dataset"][name]["recall@1"])
