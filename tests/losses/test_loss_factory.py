"""make_loss: every Table 2 loss by name, the paper's settings, fp32 computation, clear errors (docs/spec.md 5)."""

from __future__ import annotations

import math

import pytest
import torch

from peft_puma.errors import InvalidConfigError
from peft_puma.losses import (
    LOSS_NAMES,
    PAIR_LOSSES,
    PROXY_LOSSES,
    CurricularFaceLoss,
    Float32Loss,
    make_loss,
    min_samples_per_class,
)

NUM_CLASSES, EMBEDDING_SIZE = 6, 16


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(24, EMBEDDING_SIZE, generator=generator)
    labels = torch.arange(NUM_CLASSES).repeat(4)  # 4 samples per class: pair losses find positives
    return embeddings, labels


def test_loss_names_cover_table_2_and_curricularface() -> None:
    assert set(LOSS_NAMES) == {
        "triplet",
        "margin",
        "multi_similarity",
        "proxy_anchor",
        "soft_triple",
        "cosface",
        "arcface",
        "curricularface",
    }
    assert PROXY_LOSSES == {"proxy_anchor", "soft_triple", "cosface", "arcface", "curricularface"}
    assert PAIR_LOSSES == {"triplet", "margin", "multi_similarity"}
    assert all(min_samples_per_class(name) == (2 if name in PAIR_LOSSES else 1) for name in LOSS_NAMES)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_returns_a_finite_float32_scalar_with_gradient(name: str) -> None:
    loss = make_loss(name, num_classes=NUM_CLASSES, embedding_size=EMBEDDING_SIZE)
    embeddings, labels = batch()
    embeddings.requires_grad_(True)
    value = loss(embeddings, labels)
    assert value.shape == () and value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(PROXY_LOSSES))
def test_proxy_loss_parameters_are_its_proxies_and_stay_float32_under_bf16_autocast(name: str) -> None:
    loss = make_loss(name, num_classes=NUM_CLASSES, embedding_size=EMBEDDING_SIZE)
    parameters = list(loss.parameters())
    assert len(parameters) == 1
    centres_per_class = 10 if name == "soft_triple" else 1  # SoftTriple: 10 centres per class by default
    assert sorted(parameters[0].shape) == sorted((NUM_CLASSES * centres_per_class, EMBEDDING_SIZE))
    embeddings, labels = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(embeddings.bfloat16(), labels)
    # pytorch-metric-learning casts proxies to the embeddings' dtype in place; the fp32 wrapper must prevent it.
    assert value.dtype == torch.float32 and parameters[0].dtype == torch.float32


@pytest.mark.parametrize("name", sorted(PAIR_LOSSES))
def test_pair_losses_have_no_parameters_and_ignore_num_classes(name: str) -> None:
    assert list(make_loss(name).parameters()) == []
    embeddings, labels = batch()
    with_classes = make_loss(name, num_classes=NUM_CLASSES)(embeddings, labels)
    assert with_classes.item() == pytest.approx(make_loss(name)(embeddings, labels).item())


def test_loss_under_autocast_equals_the_float32_loss() -> None:
    torch.manual_seed(0)
    loss = make_loss("proxy_anchor", num_classes=NUM_CLASSES, embedding_size=EMBEDDING_SIZE)
    embeddings, labels = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = loss(embeddings, labels)
    assert inside.item() == pytest.approx(loss(embeddings, labels).item(), rel=1e-6)


def test_cosface_and_arcface_use_the_published_settings() -> None:
    cosface = make_loss("cosface", num_classes=NUM_CLASSES)
    arcface = make_loss("arcface", num_classes=NUM_CLASSES)
    assert isinstance(cosface, Float32Loss) and isinstance(arcface, Float32Loss)
    assert (cosface.loss.margin, cosface.loss.scale) == (0.35, 64.0)
    # ArcFace m = 0.5 rad; pytorch-metric-learning takes degrees (28.65) and stores radians after init_margin.
    assert arcface.loss.scale == 64.0
    assert arcface.loss.margin == pytest.approx(0.5)


def test_arcface_margin_override_is_in_radians() -> None:
    assert make_loss("arcface", num_classes=NUM_CLASSES, margin=0.2).loss.margin == pytest.approx(0.2)
    assert make_loss("arcface", num_classes=NUM_CLASSES).loss.margin == pytest.approx(math.radians(28.6479), abs=1e-4)


def test_curricularface_from_the_factory_is_the_exported_class_with_overrides() -> None:
    loss = make_loss("curricularface", num_classes=NUM_CLASSES, embedding_size=EMBEDDING_SIZE, t_mode="scalar")
    assert isinstance(loss, CurricularFaceLoss)
    assert (loss.scale, loss.margin, loss.t_mode) == (32.0, 0.3, "scalar")
    assert loss.proxies.shape == (NUM_CLASSES, EMBEDDING_SIZE)


def test_overrides_reach_pytorch_metric_learning() -> None:
    loss = make_loss("multi_similarity", alpha=3.0, beta=40.0, base=0.6)
    assert (loss.loss.alpha, loss.loss.beta, loss.loss.base) == (3.0, 40.0, 0.6)


def test_unknown_loss_name_is_a_clear_error_listing_the_known_ones() -> None:
    with pytest.raises(InvalidConfigError, match="Unknown loss 'hyp'.*curricularface"):
        make_loss("hyp", num_classes=3)


@pytest.mark.parametrize("name", sorted(PROXY_LOSSES))
def test_proxy_loss_without_num_classes_is_a_clear_error(name: str) -> None:
    with pytest.raises(InvalidConfigError, match="needs num_classes"):
        make_loss(name)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
        ({"num_classes": 3, "embedding_size": 0}, "embedding_size"),
        ({"num_classes": 3, "not_a_setting": 1}, "not_a_setting"),
    ],
)
def test_invalid_sizes_and_unknown_settings_are_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidConfigError, match=match):
        make_loss("cosface", **kwargs)
