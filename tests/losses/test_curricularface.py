"""CurricularFace against a direct hand computation (PUMA, arXiv 2309.08944; the specification is docs/losses.md).

Embeddings and proxies mostly live in 2-D at chosen angles, so every cosine is ``cos(angle difference)`` and each
expected logit can be written from the formulas of docs/losses.md with ``math`` alone. The update-order tests replay
two random batches through ``naive_batch``, a plain-Python, element-by-element recomputation of the loss and of ``t``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from peft_puma.errors import InvalidConfigError, InvalidInputError
from peft_puma.losses import CurricularFaceLoss, make_loss

M = 0.3
S = 32.0


def unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


def loss_with_proxies(proxy_angles: list[float], **kwargs) -> CurricularFaceLoss:
    loss = CurricularFaceLoss(num_classes=len(proxy_angles), embedding_size=2, **kwargs)
    with torch.no_grad():
        loss.proxies.copy_(torch.tensor([unit(a) for a in proxy_angles]))
    return loss


def naive_batch(
    proxies: list[list[float]],
    embeddings: list[list[float]],
    labels: list[int],
    t: list[float] | float,
    *,
    t_mode: str,
    t_update: str,
    momentum: float,
) -> tuple[float, list[float] | float]:
    """One training batch recomputed step by step: ``(mean loss, t after the batch)``."""

    def normalised(v: list[float]) -> list[float]:
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v]

    proxies, embeddings = [normalised(w) for w in proxies], [normalised(x) for x in embeddings]
    cosines = [[max(-1.0, min(1.0, sum(a * b for a, b in zip(x, w)))) for w in proxies] for x in embeddings]
    targets = [row[y] for row, y in zip(cosines, labels)]

    # t after the batch: EMA of the mean target cosine, per class present in the batch or over the whole batch.
    if t_mode == "per_class":
        t_after = list(t)
        for c in set(labels):
            of_class = [tc for tc, y in zip(targets, labels) if y == c]
            t_after[c] = momentum * t[c] + (1 - momentum) * sum(of_class) / len(of_class)
    else:
        t_after = momentum * t + (1 - momentum) * sum(targets) / len(targets)
    t_used = t_after if t_update == "before_loss" else t

    losses = []
    for row, y, target in zip(cosines, labels, targets):
        if target > math.cos(math.pi - M):
            target_logit = math.cos(math.acos(target) + M)
        else:
            target_logit = target - M * math.sin(math.pi - M)
        t_row = t_used[y] if t_mode == "per_class" else t_used
        logits = [target_logit if j == y else (c * (c + t_row) if c > target_logit else c) for j, c in enumerate(row)]
        top = max(S * z for z in logits)
        log_sum_exp = top + math.log(sum(math.exp(S * z - top) for z in logits))
        losses.append(log_sum_exp - S * target_logit)
    return sum(losses) / len(losses), t_after


def random_batches(embedding_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two seeded batches of labelled embeddings for 4 classes; class 2 appears in the first only."""
    generator = torch.Generator().manual_seed(1)
    first_labels = torch.tensor([0, 0, 1, 2, 2, 3])
    first = torch.randn(6, embedding_size, generator=generator)
    second_labels = torch.tensor([0, 1, 1, 3, 0])  # class 2 absent: its t must not move
    second = torch.randn(5, embedding_size, generator=generator)
    return [(first, first_labels), (second, second_labels)]


def test_curricularface_defaults_are_the_published_ones() -> None:
    loss = CurricularFaceLoss(num_classes=5)
    assert (loss.scale, loss.margin, loss.t_mode, loss.t_momentum) == (32.0, 0.3, "per_class", 0.99)
    assert loss.t_update == "after_loss"
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


def test_curricularface_hard_negative_threshold_is_the_target_logit_after_the_fallback() -> None:
    # Target at theta = 3.0 > pi - m: the target logit is the fallback cos(3.0) - m sin(pi - m) = -1.079, below the raw
    # cos(theta + m) = cos(3.3) = -0.988. The negative at 3.1 rad (cosine -0.999) lies between the two: it is hard only
    # against the fallback logit actually used, so it must be reweighted.
    theta = 3.0
    loss = loss_with_proxies([theta, -3.1, 1.0]).eval()
    loss.t.copy_(torch.tensor([0.4, 0.0, 0.0]))
    logits = loss.logits(torch.tensor([unit(0.0)]), torch.tensor([0]))

    fallback = math.cos(theta) - M * math.sin(math.pi - M)
    between, far_above = math.cos(3.1), math.cos(1.0)
    assert fallback < between < math.cos(theta + M)
    expected = [fallback, between * (between + 0.4), far_above * (far_above + 0.4)]
    assert logits[0].tolist() == pytest.approx(expected, abs=1e-6)


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
    loss = loss_with_proxies([1.2, 0.2], t_mode="scalar").eval()
    assert loss.t.shape == ()
    loss.t.fill_(0.25)
    embeddings = torch.tensor([unit(0.0), unit(1.0)])  # targets 1.2 and 0.8 rad away; negatives 0.2 rad away
    logits = loss.logits(embeddings, torch.tensor([0, 1]))
    hard = math.cos(0.2)
    assert hard > math.cos(1.2 + M) and hard > math.cos(0.8 + M)  # each row's negative is hard
    assert logits[:, [1, 0]].diagonal().tolist() == pytest.approx([hard * (hard + 0.25)] * 2, abs=1e-6)

    loss.train().logits(embeddings, torch.tensor([0, 1]))
    expected = 0.99 * 0.25 + 0.01 * (math.cos(1.2) + math.cos(0.8)) / 2
    assert loss.t.item() == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("t_mode", ["per_class", "scalar"])
@pytest.mark.parametrize("t_update", ["after_loss", "before_loss"])
def test_curricularface_two_training_batches_match_a_naive_computation_in_either_t_update_order(
    t_update: str, t_mode: str
) -> None:
    # Momentum 0.5 (not 0.99) so that t moves enough for the two orders to give clearly different losses.
    torch.manual_seed(0)
    num_classes, embedding_size, momentum = 4, 8, 0.5
    loss = CurricularFaceLoss(num_classes, embedding_size, t_mode=t_mode, t_momentum=momentum, t_update=t_update)
    loss.train()
    proxies = loss.proxies.detach().tolist()
    batches = random_batches(embedding_size)
    batches[0][0][2] = -loss.proxies.detach()[1]  # target cosine -1 < cos(pi - m): the fallback branch

    t = [0.0] * num_classes if t_mode == "per_class" else 0.0
    history = [t]
    other_order = "before_loss" if t_update == "after_loss" else "after_loss"
    for embeddings, labels in batches:
        args = (proxies, embeddings.tolist(), labels.tolist(), t)
        expected, t_next = naive_batch(*args, t_mode=t_mode, t_update=t_update, momentum=momentum)
        other, _ = naive_batch(*args, t_mode=t_mode, t_update=other_order, momentum=momentum)
        assert abs(expected - other) > 1e-3  # the batch discriminates the two orders

        assert loss(embeddings, labels).item() == pytest.approx(expected, rel=1e-5)
        t = t_next
        history.append(t)
        assert (loss.t.tolist() if t_mode == "per_class" else loss.t.item()) == pytest.approx(t, abs=1e-6)
    if t_mode == "per_class":  # class 2, absent from the second batch, kept its value from the first
        assert history[1][2] == history[2][2] != 0.0


def test_curricularface_first_training_batch_loss_equals_the_eval_loss_by_default() -> None:
    # PUMA's order: the first batch is computed with t = 0, exactly as in eval mode, and only then is t updated.
    torch.manual_seed(0)
    loss = CurricularFaceLoss(num_classes=4, embedding_size=8)
    embeddings, labels = random_batches(8)[0]
    eval_loss = loss.eval()(embeddings, labels)
    train_loss = loss.train()(embeddings, labels)
    assert torch.equal(train_loss, eval_loss)
    assert loss.t.abs().sum() > 0  # t did move, after the loss


def test_curricularface_before_loss_order_uses_the_updated_t_on_the_first_batch() -> None:
    torch.manual_seed(0)
    loss = CurricularFaceLoss(num_classes=4, embedding_size=8, t_update="before_loss")
    embeddings, labels = random_batches(8)[0]
    eval_loss = loss.eval()(embeddings, labels).item()
    train_loss = loss.train()(embeddings, labels).item()
    assert train_loss != pytest.approx(eval_loss, rel=1e-7, abs=0)


@pytest.mark.parametrize("t_mode", ["per_class", "scalar"])
@pytest.mark.parametrize("t_update", ["after_loss", "before_loss"])
def test_curricularface_eval_mode_leaves_t_unchanged(t_update: str, t_mode: str) -> None:
    torch.manual_seed(0)
    loss = CurricularFaceLoss(num_classes=4, embedding_size=8, t_mode=t_mode, t_update=t_update).eval()
    loss.t.copy_(torch.tensor([0.3, -0.1, 0.2, 0.05]) if t_mode == "per_class" else torch.tensor(0.3))
    before = loss.t.clone()
    embeddings, labels = random_batches(8)[0]
    first = loss(embeddings, labels)
    second = loss(embeddings, labels)
    assert torch.equal(loss.t, before)
    assert torch.equal(first, second)


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
        {"num_classes": 3, "t_update": "first"},
    ],
)
def test_curricularface_rejects_invalid_settings(kwargs: dict) -> None:
    with pytest.raises(InvalidConfigError):
        CurricularFaceLoss(**kwargs)


def test_curricularface_t_update_error_names_the_accepted_orders() -> None:
    with pytest.raises(InvalidConfigError, match="'after_loss', 'before_loss'"):
        CurricularFaceLoss(num_classes=3, t_update="before")


def test_curricularface_t_update_passes_through_make_loss() -> None:
    assert make_loss("curricularface", num_classes=3, embedding_size=4).t_update == "after_loss"
    loss = make_loss("curricularface", num_classes=3, embedding_size=4, t_update="before_loss")
    assert loss.t_update == "before_loss"
    with pytest.raises(InvalidConfigError, match="t_update"):
        make_loss("curricularface", num_classes=3, embedding_size=4, t_update="later")


def test_curricularface_rejects_labels_outside_its_classes_and_wrong_shapes() -> None:
    loss = CurricularFaceLoss(num_classes=3, embedding_size=4)
    with pytest.raises(InvalidInputError, match=r"\[0, 2\]"):
        loss(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(InvalidInputError, match="shape"):
        loss(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(InvalidInputError, match="integer"):
        loss(torch.randn(2, 4), torch.tensor([0.0, 1.0]))
