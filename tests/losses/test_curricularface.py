"""CurricularFace against a direct hand computation (method.md section 5).

Embeddings and proxies live in 2-D at chosen angles, so every cosine is ``cos(angle difference)`` and each expected
logit can be written from the formulas of method.md with ``math`` alone.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from peft_puma.errors import InvalidConfigError, InvalidInputError
from peft_puma.losses import CurricularFaceLoss

M = 0.3
S = 32.0


def unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


def loss_with_proxies(proxy_angles: list[float], **kwargs) -> CurricularFaceLoss:
    loss = CurricularFaceLoss(num_classes=len(proxy_angles), embedding_size=2, **kwargs)
    with torch.no_grad():
        loss.proxies.copy_(torch.tensor([unit(a) for a in proxy_angles]))
    return loss


def test_curricularface_defaults_are_the_published_ones() -> None:
    loss = CurricularFaceLoss(num_classes=5)
    assert (loss.scale, loss.margin, loss.t_mode, loss.t_momentum) == (32.0, 0.3, "per_class", 0.99)
    assert loss.proxies.shape == (5, 128) and loss.t.shape == (5,)
    assert torch.equal(loss.t, torch.zeros(5))


def test_curricularface_parameters_are_exactly_the_proxies() -> None:
    loss = CurricularFaceLoss(num_classes=7, embedding_size=16)
    assert [name for name, _ in loss.named_parameters()] == ["proxies"]
    assert "t" in loss.state_dict() and "t" not in dict(loss.named_parameters())


def test_curricularface_proxies_use_kaiming_uniform_fan_out() -> None:
    torch.manual_seed(0)
    num_classes = 600
    proxies = CurricularFaceLoss(num_classes=num_classes, embedding_size=128).proxies.detach()
    bound = math.sqrt(6.0 / num_classes)  # gain sqrt(2) * sqrt(3 / fan_out), fan_out = C for a C x 128 tensor
    assert proxies.abs().max() <= bound
    assert proxies.abs().max() > 0.95 * bound
    assert proxies.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.02)


def test_curricularface_target_takes_the_angular_margin_when_theta_is_small() -> None:
    loss = loss_with_proxies([0.5, 2.0, 3.0]).eval()
    logits = loss.logits(torch.tensor([unit(0.0)]), torch.tensor([0]))
    expected = [math.cos(0.5 + M), math.cos(2.0), math.cos(3.0)]  # negatives far below cos(theta + m): unchanged
    assert logits[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_curricularface_target_falls_back_beyond_cos_pi_minus_m() -> None:
    theta = 3.0  # > pi - m = 2.84: cos(theta + m) would no longer decrease with theta
    loss = loss_with_proxies([theta, 1.0]).eval()
    logits = loss.logits(torch.tensor([unit(0.0)]), torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(math.cos(theta) - M * math.sin(math.pi - M), abs=1e-6)


def test_curricularface_hard_negative_is_reweighted_by_its_samples_class_t() -> None:
    # Sample 0 (class 0, theta = 1.2) has class 1 (0.2 rad away) as hard negative and class 2 (2.5 rad) as an easy one;
    # sample 1 (class 1) has class 0 as hard negative. Each row must use the t of its own class.
    loss = loss_with_proxies([1.2, 0.2, 2.5]).eval()
    loss.t.copy_(torch.tensor([0.5, -0.2, 0.1]))
    embeddings = torch.tensor([unit(0.0), unit(1.1)])
    logits = loss.logits(embeddings, torch.tensor([0, 1]))

    hard = math.cos(0.2)
    assert hard > math.cos(1.2 + M)
    assert logits[0].tolist() == pytest.approx([math.cos(1.2 + M), hard * (hard + 0.5), math.cos(2.5)], abs=1e-6)
    hard_1 = math.cos(0.1)  # sample 1 to proxy 0; its target is proxy 1 at 0.9 rad: cos(1.2) < cos(0.1)
    assert logits[1].tolist() == pytest.approx([hard_1 * (hard_1 - 0.2), math.cos(0.9 + M), math.cos(1.4)], abs=1e-6)


def test_curricularface_negative_below_the_margin_logit_is_untouched_whatever_t() -> None:
    loss = loss_with_proxies([0.4, 1.0]).eval()
    loss.t.fill_(0.9)
    logits = loss.logits(torch.tensor([unit(0.0)]), torch.tensor([0]))
    assert math.cos(1.0) < math.cos(0.4 + M)
    assert logits[0, 1].item() == pytest.approx(math.cos(1.0), abs=1e-6)


def test_curricularface_per_class_t_is_an_ema_of_the_class_mean_target_cosine() -> None:
    loss = loss_with_proxies([0.0, 1.5, 3.0]).train()
    embeddings = torch.tensor([unit(0.2), unit(0.4), unit(1.0)])
    labels = torch.tensor([0, 0, 1])
    loss(embeddings, labels)
    mean_0 = (math.cos(0.2) + math.cos(0.4)) / 2
    assert loss.t.tolist() == pytest.approx([0.01 * mean_0, 0.01 * math.cos(0.5), 0.0], abs=1e-7)
    loss(embeddings[:1], labels[:1])
    assert loss.t[0].item() == pytest.approx(0.99 * 0.01 * mean_0 + 0.01 * math.cos(0.2), abs=1e-7)
    assert loss.t[1].item() == pytest.approx(0.01 * math.cos(0.5), abs=1e-7)  # absent class: unchanged


def test_curricularface_scalar_t_is_an_ema_of_the_batch_mean_and_is_used_for_every_row() -> None:
    loss = loss_with_proxies([1.2, 0.2], t_mode="scalar").train()
    assert loss.t.shape == ()
    embeddings = torch.tensor([unit(0.0), unit(0.1)])
    logits = loss.logits(embeddings, torch.tensor([0, 1]))
    t = 0.01 * (math.cos(1.2) + math.cos(0.1)) / 2
    assert loss.t.item() == pytest.approx(t, abs=1e-7)
    hard = math.cos(0.2)  # updated t is used in the same forward, as in the published code
    assert logits[0, 1].item() == pytest.approx(hard * (hard + t), abs=1e-6)


def test_curricularface_eval_mode_leaves_t_unchanged() -> None:
    loss = loss_with_proxies([0.0, 1.5]).eval()
    loss(torch.tensor([unit(0.3)]), torch.tensor([0]))
    assert torch.equal(loss.t, torch.zeros(2))


def test_curricularface_loss_is_cross_entropy_of_scaled_logits() -> None:
    loss = loss_with_proxies([0.5, 2.0, 3.0]).eval()
    logits = [math.cos(0.5 + M), math.cos(2.0), math.cos(3.0)]
    expected = -S * logits[0] + math.log(sum(math.exp(S * z) for z in logits))
    value = loss(torch.tensor([unit(0.0)]), torch.tensor([0]))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_curricularface_gradient_is_finite_even_when_embedding_equals_its_proxy() -> None:
    torch.manual_seed(0)
    loss = CurricularFaceLoss(num_classes=4, embedding_size=8)
    embeddings = torch.randn(6, 8)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    embeddings[0] = loss.proxies.detach()[0] * 3.0  # cos(theta) = 1 exactly: sin(theta) = 0
    embeddings.requires_grad_(True)
    loss(embeddings, labels).backward()
    assert torch.isfinite(embeddings.grad).all()
    assert torch.isfinite(loss.proxies.grad).all() and loss.proxies.grad.abs().sum() > 0


def test_curricularface_computes_in_float32_under_half_precision_autocast() -> None:
    torch.manual_seed(0)
    loss = CurricularFaceLoss(num_classes=4, embedding_size=8)
    embeddings = torch.randn(6, 8, dtype=torch.bfloat16)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(embeddings, labels)
    assert value.dtype == torch.float32 and loss.proxies.dtype == torch.float32
    loss.t.zero_()
    assert value.item() == pytest.approx(loss(embeddings.float(), labels).item(), rel=1e-6)


def test_curricularface_training_on_separable_embeddings_reduces_the_loss() -> None:
    torch.manual_seed(0)
    num_classes, per_class = 4, 8
    centres = F.normalize(torch.randn(num_classes, 16), dim=1)
    embeddings = centres.repeat_interleave(per_class, 0) + 0.05 * torch.randn(num_classes * per_class, 16)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    loss = CurricularFaceLoss(num_classes=num_classes, embedding_size=16)
    optimiser = torch.optim.SGD(loss.parameters(), lr=0.05)
    values = []
    for _ in range(30):
        optimiser.zero_grad()
        value = loss(embeddings, labels)
        value.backward()
        optimiser.step()
        values.append(value.item())
    assert values[-1] < 0.5 * values[0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 0},
        {"num_classes": 3, "embedding_size": -1},
        {"num_classes": 3, "margin": 2.0},
        {"num_classes": 3, "scale": 0.0},
        {"num_classes": 3, "t_mode": "global"},
        {"num_classes": 3, "t_momentum": 1.5},
    ],
)
def test_curricularface_rejects_invalid_settings(kwargs: dict) -> None:
    with pytest.raises(InvalidConfigError):
        CurricularFaceLoss(**kwargs)


def test_curricularface_rejects_labels_outside_its_classes_and_wrong_shapes() -> None:
    loss = CurricularFaceLoss(num_classes=3, embedding_size=4)
    with pytest.raises(InvalidInputError, match=r"\[0, 2\]"):
        loss(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(InvalidInputError, match="shape"):
        loss(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(InvalidInputError, match="integer"):
        loss(torch.randn(2, 4), torch.tensor([0.0, 1.0]))
