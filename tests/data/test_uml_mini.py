"""UML-mini: the offline benchmark's plan meets the brief at full size, and a tiny build has the shared row schema."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

from peft_puma.data.schema import ROLE_BOTH, ROLE_GALLERY, ROLE_QUERY, ROLE_TRAIN, row_features
from peft_puma.data.uml_mini import (
    DOMAINS,
    EMOJI_CLASSES,
    GLYPH_ALPHABETS,
    MANIFEST,
    SPLITS,
    UMLMiniConfig,
    build_uml_mini,
    format_summary,
    load_or_build_uml_mini,
    plan_uml_mini,
    required_packages,
    summarize,
)
from peft_puma.data.uml_mini.__main__ import main
from peft_puma.data.uml_mini.render import IMAGE_SIZE, emoji_bitmap
from peft_puma.data.uml_mini.sources import (
    SOURCES,
    SourceFolders,
    digit_pools,
    faces_drawing,
    install_command,
    load_digits,
    missing_packages,
)
from peft_puma.errors import DatasetLayoutError, ForeignContentError, InvalidConfigError

TINY = UMLMiniConfig(seed=3, scale=0.05)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """One tiny build written through the cached entry point: ``(dataset, manifest, out folder)``."""
    out = tmp_path_factory.mktemp("uml") / "tiny"
    dataset, manifest, cached = load_or_build_uml_mini(str(out), TINY)
    assert not cached
    return dataset, manifest, out


def _classes_by_domain(plans, split: str) -> dict[str, set[str]]:
    keys = defaultdict(set)
    for plan in plans:
        if plan.split == split:
            keys[plan.domain].add(plan.key)
    return keys


def test_default_plan_has_heterogeneous_domains_with_enough_test_classes():
    summary = summarize(plan_uml_mini())
    assert len(summary["domains"]) >= 4
    for name, row in summary["domains"].items():
        assert row["test_classes"] >= 20, name
        assert row["train_classes"] >= 20, name
        assert row["validation_classes"] >= 10, name  # enough to measure a recipe choice per domain
    assert len({row["cue"] for row in summary["domains"].values()}) >= 4


def test_default_plan_is_strongly_imbalanced():
    summary = summarize(plan_uml_mini())
    sizes = [row["train_images"] for row in summary["domains"].values()]
    assert summary["imbalance_ratio"] == max(sizes) / min(sizes) >= 10


def test_train_validation_and_test_classes_are_disjoint_and_labels_globally_unique():
    plans = plan_uml_mini()
    by_split = {split: _classes_by_domain(plans, split) for split in SPLITS}
    for domain in DOMAINS:
        for first, second in [("train", "validation"), ("train", "test"), ("validation", "test")]:
            assert not by_split[first][domain.name] & by_split[second][domain.name], (domain.name, first, second)
    labels = [plan.label for plan in plans]
    assert labels == list(range(len(plans)))  # one label per class, training labels first (contiguous 0..T-1)
    assert [plan.split for plan in plans] == sorted((p.split for p in plans), key=SPLITS.index)  # train, val, test


def test_every_domain_gets_its_declared_classes_and_images_per_split():
    summary = summarize(plan_uml_mini())
    for domain in DOMAINS:
        row = summary["domains"][domain.name]
        for split in SPLITS:
            size = domain.size(split)
            assert (row[f"{split}_classes"], row[f"{split}_images"]) == (size.classes, size.classes * size.per_class)


def test_glyph_alphabets_have_no_two_letters_drawn_alike_by_design():
    assert "\u0110" not in GLYPH_ALPHABETS["latin"]  # Đ is drawn exactly as Ð (U+00D0), which is kept
    for alphabet in GLYPH_ALPHABETS.values():
        assert len(set(alphabet)) == len(alphabet) and all(letter.isalpha() for letter in alphabet)


def test_numbers_of_each_split_are_composed_from_their_own_handwritten_digit_images(monkeypatch):
    import peft_puma.data.uml_mini as uml_mini

    pools = digit_pools()
    assert set(pools) == {"train", "validation", "test", "pretrain"}
    for first, second in [(a, b) for a in pools for b in pools if a < b]:
        assert not set(pools[first]) & set(pools[second]), (first, second)
    assert sum(len(pool) for pool in pools.values()) == len(load_digits()[1])
    composed: list[list[bytes]] = []
    original = uml_mini.render_number

    def spy(digits, rng):
        composed.append([digit.tobytes() for digit in digits])
        return original(digits, rng)

    monkeypatch.setattr(uml_mini, "render_number", spy)
    _, plans = build_uml_mini(TINY)
    images = load_digits()[0]
    splits = [plan.split for plan in plans if plan.domain == "numbers" for _ in plan.roles]
    assert len(splits) == len(composed) and set(splits) == {"train", "validation", "test"}
    for split, digits in zip(splits, composed):
        own = {images[i].tobytes() for i in pools[split]}
        assert all(digit in own for digit in digits), split


def test_every_emoji_class_is_drawn_by_the_installed_font():
    assert len(set(EMOJI_CLASSES)) == len(EMOJI_CLASSES)
    assert [e for e in EMOJI_CLASSES if emoji_bitmap(e) is None] == []


def test_glyph_domains_have_a_distinct_typeface_for_every_training_image():
    for domain in DOMAINS:
        if domain.kind == "glyphs":
            needed = max(domain.size(split).per_class for split in SPLITS)
            assert len(faces_drawing(GLYPH_ALPHABETS[domain.name])) >= needed, domain.name


def test_tiny_build_has_the_shared_row_schema(tiny):
    dataset, _, _ = tiny
    assert set(dataset) == {"train", "validation", "test"}
    for split in dataset.values():
        assert split.features == row_features()
    assert set(dataset["train"]["role"]) == {ROLE_TRAIN}
    for split in ("validation", "test"):  # validation is scored exactly as test is
        assert set(dataset[split]["role"]) == {ROLE_BOTH, ROLE_QUERY, ROLE_GALLERY}
        roles_by_domain = defaultdict(set)
        for name, role in zip(dataset[split]["dataset"], dataset[split]["role"]):
            roles_by_domain[name].add(role)
        assert roles_by_domain.pop("fashion") == {ROLE_QUERY, ROLE_GALLERY}
        assert all(roles == {ROLE_BOTH} for roles in roles_by_domain.values())
    image = dataset["test"][0]["image"]
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE) and image.mode == "RGB"


def test_tiny_build_keeps_splits_class_disjoint_and_labels_within_one_domain(tiny):
    dataset, _, _ = tiny
    labels = {split: set(dataset[split]["label"]) for split in dataset}
    assert not labels["train"] & labels["test"] and not labels["validation"] & (labels["train"] | labels["test"])
    domain_of_label: dict[int, str] = {}
    for split in dataset.values():
        for label, name in zip(split["label"], split["dataset"]):
            assert domain_of_label.setdefault(label, name) == name
    assert sorted(set(dataset["train"]["label"])) == list(range(len(set(dataset["train"]["label"]))))


def test_summary_agrees_with_the_built_rows(tiny):
    dataset, manifest, _ = tiny
    for name, row in manifest["summary"]["domains"].items():
        for split in SPLITS:
            labels = [lab for lab, d in zip(dataset[split]["label"], dataset[split]["dataset"]) if d == name]
            assert row[f"{split}_images"] == len(labels)
            assert row[f"{split}_classes"] == len(set(labels))
    totals = manifest["summary"]["totals"]
    assert len(manifest["class_names"]) == sum(totals[f"{split}_classes"] for split in SPLITS)
    assert "imbalance" in format_summary(manifest["summary"])


def test_build_is_deterministic_in_the_seed(tiny):
    dataset, _, _ = tiny
    again, _ = build_uml_mini(TINY)
    other, _ = build_uml_mini(UMLMiniConfig(seed=TINY.seed + 1, scale=TINY.scale))
    for split in SPLITS:
        assert again[split].data.equals(dataset[split].data)
    assert not other["test"].data.equals(dataset["test"].data)


def test_cache_is_reused_for_the_same_config_and_redone_for_another_only_when_forced(tiny):
    _, _, out = tiny
    stamp = os.path.getmtime(out / MANIFEST)
    _, _, cached = load_or_build_uml_mini(str(out), TINY)
    assert cached and os.path.getmtime(out / MANIFEST) == stamp
    copy = out.parent / "other"
    _, manifest, cached = load_or_build_uml_mini(str(copy), TINY)
    assert not cached
    (copy / MANIFEST).write_text(json.dumps({**manifest, "config": {"seed": 99, "scale": TINY.scale}}))
    with pytest.raises(ForeignContentError, match="seed 99"):
        load_or_build_uml_mini(str(copy), TINY)
    _, _, cached = load_or_build_uml_mini(str(copy), TINY, force=True)
    assert not cached and json.loads((copy / MANIFEST).read_text())["config"]["seed"] == TINY.seed


def test_missing_sources_are_named_with_the_apt_get_line(tmp_path: Path):
    with pytest.raises(DatasetLayoutError) as error:
        build_uml_mini(TINY, SourceFolders(root=str(tmp_path)))
    assert install_command(required_packages()) in str(error.value)
    present = [s for s in SOURCES if s.package != "dataset-fashion-mnist"]
    for source in present:
        sentinel = tmp_path / source.sentinel.lstrip("/")
        sentinel.parent.mkdir(parents=True, exist_ok=True)
        sentinel.write_bytes(b"")
    assert missing_packages(required_packages(), str(tmp_path)) == ["dataset-fashion-mnist"]
    with pytest.raises(DatasetLayoutError, match="apt-get install -y --no-install-recommends dataset-fashion-mnist`"):
        build_uml_mini(TINY, SourceFolders(root=str(tmp_path)))


def test_scale_outside_its_range_is_refused():
    with pytest.raises(InvalidConfigError, match="scale"):
        UMLMiniConfig(scale=0)


def test_command_line_prints_the_summary(tiny, capsys: pytest.CaptureFixture[str]):
    _, _, out = tiny
    assert main(["--output_dir", str(out), "--seed", str(TINY.seed), "--scale", str(TINY.scale)]) == 0
    printed = capsys.readouterr().out
    assert "reused cached build" in printed
    for domain in DOMAINS:
        assert domain.name in printed
