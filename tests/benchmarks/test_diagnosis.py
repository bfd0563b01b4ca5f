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


@pytest.mark.parametrize("split", ["test", None])
def test_frozen_scores_not_on_the_validation_split_are_refused(diagnosis, tmp_path, split):
    """Files written before `evaluate --split` existed have no split and scored the test split."""
    path = tmp_path / "frozen.json"
    result = {"per_dataset": {}, "unified": {"recall@1": 0.1}, "harmonic": {"recall@1": 0.1}}
    path.write_text(json.dumps({**result, "split": split} if split else result))
    with pytest.raises(SystemExit, match="test split"):
        diagnosis.read_frozen(str(path))


def test_misses_count_a_look_alike_from_another_script_as_a_miss_in_that_domain(diagnosis):
    # latin "A" and cyrillic "А" drawn alike: each latin query's nearest neighbour is its twin from the other script
    embeddings = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.995, 0.05], [0.0, 1.0], [0.1, 0.99]])
    labels = [0, 0, 1, 2, 2]  # UML-mini's labels are unique across domains
    domains = ["latin", "latin", "cyrillic", "cyrillic", "cyrillic"]
    result = diagnosis.nearest_neighbour_domains(embeddings, labels, domains, ["both"] * 5)
    # rows 0 and 1 (latin A) each find cyrillic row 2 first; row 2 (cyrillic А) has no other row of its class and is
    # left out; rows 3 and 4 (cyrillic Б) find each other
    assert result == {
        "queries": 4,
        "hits": 2,
        "misses": {"latin": {"cyrillic": 2}},
        "cross_domain_pairs": {"latin:0 -> cyrillic:1": 2},
    }
    names = {"0": "latin:A", "1": "cyrillic:А", "2": "cyrillic:Б"}
    named = diagnosis.nearest_neighbour_domains(embeddings, labels, domains, ["both"] * 5, names)
    assert named["cross_domain_pairs"] == {"latin:A -> cyrillic:А": 2}


def test_misses_agree_with_unified_recall_at_1_on_random_embeddings_with_roles(diagnosis):
    from peft_puma.errors import PUMAError
    from peft_puma.evaluation import evaluate_retrieval

    rng = np.random.default_rng(0)
    rows = 120
    embeddings = torch.from_numpy(rng.normal(size=(rows, 8))).float()
    embeddings[7] = embeddings[3]  # an exact tie: broken by row order in both
    labels = rng.integers(0, 12, size=rows).tolist()
    domains = rng.choice(["fashion", "latin", "greek"], size=rows).tolist()
    roles = ["query" if d == "fashion" and i % 2 else "gallery" if d == "fashion" else "both" for i, d in
             enumerate(domains)]  # fmt: skip
    labels[0], domains[0], roles[0] = 99, "latin", "both"  # a class of one: no match, left out by both
    result = diagnosis.nearest_neighbour_domains(embeddings, labels, domains, roles)
    unified = evaluate_retrieval(embeddings, labels, domains, ks=(1,), roles=roles)["unified"]
    assert result["queries"] == unified["num_queries"]
    assert result["hits"] / result["queries"] == pytest.approx(unified["recall@1"])
    assert result["hits"] + sum(sum(by.values()) for by in result["misses"].values()) == result["queries"]
    with pytest.raises(PUMAError, match="'train'"):  # training rows are never scored, as in evaluate_retrieval
        diagnosis.nearest_neighbour_domains(embeddings, labels, domains, ["train", *roles[1:]])


def test_misses_command_writes_a_row_per_model_and_its_table(diagnosis, tiny_setup, tmp_path):
    output = tmp_path / "misses.json"
    argv = ["misses", "--uml_mini_dir", tiny_setup["uml_mini"], "--backbone", tiny_setup["backbone"]]
    assert diagnosis.main([*argv, "--adapter", tiny_setup["unified"], "--output", str(output)]) == 0
    written = json.loads(output.read_text())
    assert written["benchmark"] == "diagnosis misses" and written["split"] == "validation"
    assert list(written["models"]) == ["frozen", tiny_setup["unified"]]
    for entry in written["models"].values():
        missed = sum(sum(by.values()) for by in entry["misses"].values())
        assert entry["hits"] + missed == entry["queries"] > 0
    table = diagnosis.misses_markdown(written)
    assert table.count("\n") == 3 and tiny_setup["unified"] in table


def _training_fixtures():
    spec = importlib.util.spec_from_file_location(
        "fixtures_for_diagnosis", os.path.join(REPO, "tests", "training", "fixtures.py")
    )
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    return fixtures


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A tiny UML-mini build, a tiny backbone, a tiny config on them, and one unified run scored on validation."""
    from peft_puma.data.uml_mini import UMLMiniConfig, load_or_build_uml_mini
    from peft_puma.training import load_config, train

    fixtures = _training_fixtures()
    root = tmp_path_factory.mktemp("diagnosis")
    uml_mini = str(root / "uml")
    load_or_build_uml_mini(uml_mini, UMLMiniConfig(scale=0.03))
    backbone = fixtures.make_backbone(str(root / "vit"))
    values = fixtures.tiny_config(backbone, None, uml_mini_dir=uml_mini, epochs=1, eval_ks=[1], save_every_steps=0)
    config = fixtures.write_config(str(root / "tiny.yaml"), {k: v for k, v in values.items() if v is not None})
    unified = str(root / "unified")
    train(load_config(config, {"output_dir": unified, "eval_split": "validation"}))
    return {"uml_mini": uml_mini, "backbone": backbone, "config": config, "unified": unified}


@pytest.mark.parametrize("command", ["colour", "fit"])
def test_colour_and_fit_commands_write_a_row_per_model(diagnosis, tiny_setup, tmp_path, command):
    output = tmp_path / f"{command}.json"
    argv = [command, "--uml_mini_dir", tiny_setup["uml_mini"], "--backbone", tiny_setup["backbone"]]
    assert diagnosis.main([*argv, "--adapter", tiny_setup["unified"], "--output", str(output)]) == 0
    written = json.loads(output.read_text())
    assert written["benchmark"] == f"diagnosis {command}"
    assert written["split"] == ("validation" if command == "colour" else "train")
    assert list(written["models"]) == ["frozen", tiny_setup["unified"]]
    for row in written["models"].values():
        if command == "colour":
            assert set(row["as rendered"]) == set(row["colour removed"]) == set(diagnosis.GLYPH_DOMAINS)
            scores = [*row["as rendered"].values(), *row["colour removed"].values()]
            assert row["colour_reliance"] > 0
        else:
            scores = list(row.values())
        assert scores and all(0 <= value <= 100 for value in scores)
    # the trained adapter really was applied: its scores are not the frozen backbone's
    assert written["models"]["frozen"] != written["models"][tiny_setup["unified"]]


def test_fit_refuses_an_unknown_domain_by_name(diagnosis, tiny_setup, tmp_path):
    argv = ["fit", "--uml_mini_dir", tiny_setup["uml_mini"], "--backbone", tiny_setup["backbone"]]
    with pytest.raises(SystemExit, match="'klingon'.*latin"):
        diagnosis.main([*argv, "--datasets", "klingon", "--output", str(tmp_path / "fit.json")])


def test_domains_command_trains_each_domain_alone_and_sets_it_beside_the_unified_run(diagnosis, tiny_setup, tmp_path):
    from peft_puma.data.uml_mini import DOMAINS

    output = tmp_path / "domains.json"
    alone = tmp_path / "alone"
    argv = ["domains", "--config", tiny_setup["config"], "--runs_dir", str(alone), "--unified", tiny_setup["unified"]]
    assert diagnosis.main([*argv, "--output", str(output)]) == 0
    written = json.loads(output.read_text())
    assert list(written["alone"]) == list(written["unified"]) == [domain.name for domain in DOMAINS]
    for name in written["alone"]:  # each domain's run saw that domain only, and was scored on validation
        result = json.loads((alone / name / "results.json").read_text())
        assert result["split"] == "validation" and list(result["per_dataset"]) == [name]
        assert written["alone"][name] == pytest.approx(100 * result["per_dataset"][name]["recall@1"])
    # --reuse_finished reads the same runs instead of training them again; another recipe there is refused
    stamps = {name: (alone / name / "results.json").stat().st_mtime_ns for name in written["alone"]}
    assert diagnosis.main([*argv, "--reuse_finished", "--output", str(output)]) == 0
    assert json.loads(output.read_text())["alone"] == written["alone"]
    assert stamps == {name: (alone / name / "results.json").stat().st_mtime_ns for name in written["alone"]}
    with pytest.raises(SystemExit, match="epochs"):
        diagnosis.main([*argv, "--reuse_finished", "--epochs", "3", "--output", str(output)])


def test_domains_refuses_a_unified_run_scored_on_test_before_training_anything(diagnosis, tiny_setup, tmp_path):
    from peft_puma.training import load_config, train

    scored_on_test = str(tmp_path / "test_run")
    train(load_config(tiny_setup["config"], {"output_dir": scored_on_test}))
    argv = ["domains", "--config", tiny_setup["config"], "--runs_dir", str(tmp_path / "alone")]
    with pytest.raises(SystemExit, match="'test' split"):
        diagnosis.main([*argv, "--unified", scored_on_test, "--output", str(tmp_path / "d.json")])
    assert not (tmp_path / "alone").exists()


def test_a_missing_adapter_is_one_line_and_status_2(diagnosis, tiny_setup, tmp_path, capsys):
    argv = ["fit", "--uml_mini_dir", tiny_setup["uml_mini"], "--backbone", tiny_setup["backbone"]]
    assert diagnosis.main([*argv, "--adapter", str(tmp_path / "nowhere"), "--output", str(tmp_path / "f.json")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
