"""A tiny HF ViT, honestly pretrained here, that stands in for the paper's ImageNet ViT on the UML-mini benchmark.

PUMA freezes a pretrained backbone (docs/spec.md section 1) and only adds adapters, prompts and a head, so the
benchmark means something only if the frozen features are general yet not trained on the test classes. No pretrained
ViT can be downloaded on the project's machines, so this script makes one:

- architecture: ``transformers.ViTModel`` at 32x32 px, patch 4 (64 patches + CLS), pre-norm blocks with qkv bias and
  LayerNorm eps 1e-6 like the paper's ViT-S/16, only narrower and shallower (defaults: width 128, 4 layers, 4 heads);
- data: :mod:`peft_puma.standin.pool`, which shares no class (and no image) with UML-mini's train or test
  split: digits and symbols in ~120 typefaces, letters of sixteen other scripts, 300 other emoji, Fashion-MNIST
  categories on its ``t10k`` file, single handwritten digits. The letters' two colours are redrawn at every step
  (``recolour_glyphs``), because UML-mini's glyph domains need features that ignore colour;
- objective: supervised classification with a cosine-softmax head (normalised CLS features against normalised class
  weights). Supervised pretraining is what the paper's ImageNet-21k backbone had; the cosine head makes the CLS
  feature, which zero-shot retrieval and PUMA's head read (docs/spec.md section 4), the quantity being trained. The
  head is thrown away; only the ViT is saved.

``python -m peft_puma.standin --output_dir assets/uml_mini_vit`` writes ``config.json``, ``model.safetensors``,
``preprocessor_config.json`` (the pixel statistics used), ``pretraining.json`` and ``README.md``. It measures
zero-shot Recall@1 on UML-mini's validation split after every epoch, and at the end against two baselines (raw
pixels and the same ViT untrained); the test split is never read.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

from ..errors import InvalidConfigError
from ..owned_paths import OwnedLayout, discard_staging, make_staging_folder, move_into_place
from .pool import PretrainingPool

IMAGE_SIZE, PATCH_SIZE = 32, 4


@dataclass(frozen=True)
class MiniViTRecipe:
    """Everything the pretrained weights depend on; recorded in ``pretraining.json`` next to them."""

    seed: int = 0  # the pool's images and held-out split; also the training's, unless training_seed says otherwise
    training_seed: int | None = None  # initialisation, batch order and augmentation draws on the same pool (spread)
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    logit_scale: float = 16.0  # cosine-softmax temperature: logits = scale * cos(feature, class weight)
    label_smoothing: float = 0.1
    val_fraction: float = 0.05  # pool images held out to measure pretraining accuracy
    recolour_glyphs: bool = True  # redraw the two colours of every glyph image at every step (see _recolour)
    pool_scale: float = 1.0  # < 1 shrinks the pretraining pool (tests)
    max_steps: int | None = None  # stop early after this many optimiser steps (tests)

    @property
    def training_draws_seed(self) -> int:
        """The seed of the weights' initialisation, the batch order and the augmentation: ``training_seed`` where set,
        so that several backbones can be pretrained on one and the same pool (the procedure's spread over seeds)."""
        return self.seed if self.training_seed is None else self.training_seed

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise InvalidConfigError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        if self.epochs < 1 or self.batch_size < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise InvalidConfigError("epochs, batch_size and max_steps must be positive")


def mini_vit_config(recipe: MiniViTRecipe) -> ViTConfig:
    """The HF config: a ViT-S/16-style encoder (qkv bias, eps 1e-6, exact GELU, MLP 4x) at 32 px with 4 px patches."""
    return ViTConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        num_channels=3,
        hidden_size=recipe.hidden_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        intermediate_size=4 * recipe.hidden_size,
        hidden_act="gelu",
        qkv_bias=True,
        layer_norm_eps=1e-6,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def image_processor(mean: Sequence[float], std: Sequence[float]) -> ViTImageProcessorPil:
    """The processor saved with the weights: resize to 32 px, scale to [0, 1], normalise with the pool's statistics."""
    return ViTImageProcessorPil(
        do_resize=True,
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[round(float(m), 4) for m in mean],
        image_std=[round(float(s), 4) for s in std],
    )


def _unit_pixels(images: np.ndarray) -> torch.Tensor:
    """``(N, 32, 32, 3)`` uint8 -> ``(N, 3, 32, 32)`` float32 in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def _standardised(pixels: torch.Tensor, processor: ViTImageProcessorPil) -> torch.Tensor:
    """[0, 1] pixels normalised exactly as the saved processor would do it."""
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    return (pixels - mean) / std


def _normalised(images: np.ndarray, processor: ViTImageProcessorPil) -> torch.Tensor:
    """``(N, 32, 32, 3)`` uint8 -> ``(N, 3, 32, 32)`` float32, exactly as the saved processor would do it."""
    return _standardised(_unit_pixels(images), processor)


def _hsv_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``(N,)`` HSV in [0, 1] -> ``(N, 3)`` RGB in [0, 1] (the closed form of ``colorsys.hsv_to_rgb``)."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + 6 * hue[:, None]) % 6
    return value[:, None] * (1 - saturation[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1))


def _contrasting_colours(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` foreground and background colours drawn as UML-mini's glyph renderer draws them: one dark (value
    0-0.45) and one light (0.8-1), either way round, random hue, saturation up to 0.9."""
    dark = 0.45 * torch.rand(count, generator=generator)
    light = 0.8 + 0.2 * torch.rand(count, generator=generator)
    swap = torch.rand(count, generator=generator) < 0.5
    values = torch.stack([torch.where(swap, light, dark), torch.where(swap, dark, light)])
    hues, saturations = torch.rand(2, count, generator=generator), 0.9 * torch.rand(2, count, generator=generator)
    foreground = _hsv_to_rgb(hues[0], saturations[0], values[0])
    return foreground, _hsv_to_rgb(hues[1], saturations[1], values[1])


def _recolour(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Glyph images (two colours and their anti-aliased blend) redrawn in two new random colours.

    A glyph image is close to ``background + ink * (foreground - background)``. The background is the median of the
    border; the ink axis runs to the pixel farthest from it, and ``ink`` is each pixel's projection on that axis,
    clipped to [0, 1]. The farthest pixel is often a Lanczos overshoot, so full strokes come out at about 0.9 ink: a
    redrawn letter has a little less contrast than a rendered one. Redrawing the colours at every step shows each
    letter in ever new colours, so pretraining cannot tell letters apart by colour, which UML-mini's glyph domains
    punish (docs/benchmarks.md, "Diagnosis": the earlier stand-in matched glyphs by colour).
    """
    count = pixels.shape[0]
    if count == 0:
        return pixels
    border = torch.cat([pixels[:, :, 0], pixels[:, :, -1], pixels[:, :, :, 0], pixels[:, :, :, -1]], dim=2)
    background = border.median(dim=2).values
    offset = pixels - background[:, :, None, None]
    farthest = offset.square().sum(dim=1).flatten(1).argmax(dim=1)
    axis = pixels.flatten(2)[torch.arange(count), :, farthest] - background
    ink = (offset * axis[:, :, None, None]).sum(dim=1) / axis.square().sum(dim=1).clamp_min(1e-6)[:, None, None]
    foreground, new_background = _contrasting_colours(count, generator)
    blend = ink.clamp(0, 1)[:, None]
    return new_background[:, :, None, None] + blend * (foreground - new_background)[:, :, None, None]


def _jitter(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shift (up to 10%) and scale (0.9-1.1) per image; no mirroring, which would change glyphs and numbers."""
    count = batch.shape[0]
    scale = 0.9 + 0.2 * torch.rand(count, generator=generator)
    shift = 0.2 * torch.rand(count, 2, generator=generator) - 0.1
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = scale, scale, shift
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, padding_mode="border", align_corners=False)


class _CosineClassifier(torch.nn.Module):
    """Class weights compared with the CLS feature by cosine similarity, times a fixed scale (normalised softmax)."""

    def __init__(self, hidden_size: int, num_classes: int, scale: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(num_classes, hidden_size) * 0.02)
        self.scale = scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(features, dim=-1) @ F.normalize(self.weight, dim=-1).T


@torch.no_grad()
def cls_embeddings(model: ViTModel, pixel_values: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The CLS token after the final LayerNorm: what zero-shot retrieval and PUMA's embedding head read."""
    model.eval()
    chunks = [
        model(pixel_values=pixel_values[i : i + batch_size]).last_hidden_state[:, 0]
        for i in range(0, len(pixel_values), batch_size)
    ]
    return torch.cat(chunks)


def _held_out(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of validation images: a random ``fraction`` of each class (at least one image of larger ones)."""
    rng = np.random.default_rng([seed, 19])
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) > 2:
            mask[rng.choice(members, size=max(1, round(fraction * len(members))), replace=False)] = True
    return mask


def pretrain(
    recipe: MiniViTRecipe,
    pool: PretrainingPool,
    log: Callable[[str], None] = print,
    probe: Callable[[ViTModel, ViTImageProcessorPil], dict[str, float]] | None = None,
) -> tuple[ViTModel, ViTImageProcessorPil, dict]:
    """Train the ViT on the pool; returns the model, its processor and the training record (losses, accuracy, time).

    ``probe``, when given, scores the model after every epoch (zero-shot Recall@1 on UML-mini's validation split, a
    dict with at least ``unified`` and ``harmonic``), so the record shows what each epoch of the budget bought.
    """
    torch.manual_seed(recipe.training_draws_seed)
    start = time.perf_counter()
    validation = _held_out(pool.labels, recipe.val_fraction, recipe.seed)
    train_images = pool.images[~validation]
    pixels = train_images.reshape(-1, 3).astype(np.float64) / 255.0
    processor = image_processor(pixels.mean(axis=0), pixels.std(axis=0))
    inputs, labels = _unit_pixels(train_images), torch.from_numpy(pool.labels[~validation])
    recolourable = torch.from_numpy(pool.glyph_images()[~validation] & recipe.recolour_glyphs)
    model = ViTModel(mini_vit_config(recipe), add_pooling_layer=False)
    head = _CosineClassifier(recipe.hidden_size, len(pool.class_names), recipe.logit_scale)
    parameters = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(inputs) / recipe.batch_size)
    total = min(recipe.epochs * steps_per_epoch, recipe.max_steps or math.inf)
    warmup = max(1, round(recipe.warmup_fraction * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0))))
    )
    generator = torch.Generator().manual_seed(recipe.training_draws_seed)
    record: dict = {"epochs": [], "steps": 0}
    while record["steps"] < total:
        model.train()
        order, losses = torch.randperm(len(inputs), generator=generator), []
        for first in range(0, len(order), recipe.batch_size):
            batch = order[first : first + recipe.batch_size]
            images, glyphs = inputs[batch], recolourable[batch]  # indexing by a tensor copies: inputs stay as built
            images[glyphs] = _recolour(images[glyphs], generator)
            images = _jitter(_standardised(images, processor), generator)
            features = model(pixel_values=images).last_hidden_state[:, 0]
            loss = F.cross_entropy(head(features), labels[batch], label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            record["steps"] += 1
            if record["steps"] >= total:
                break
        accuracy = _accuracy(model, head, _normalised(pool.images[validation], processor), pool.labels[validation])
        record["epochs"].append({"loss": float(np.mean(losses)), "val_accuracy": accuracy})
        probed = ""
        if probe is not None:
            record["epochs"][-1]["zero_shot_recall_at_1"] = scores = probe(model, processor)
            probed = f", zero-shot unified {100 * scores['unified']:.1f} / harmonic {100 * scores['harmonic']:.1f}"
        log(f"epoch {len(record['epochs'])}: loss {np.mean(losses):.3f}, held-out accuracy {accuracy:.3f}{probed}, "
            f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    record.update(seconds=round(time.perf_counter() - start, 1), val_accuracy=record["epochs"][-1]["val_accuracy"])
    record.update(train_images=int(len(inputs)), val_images=int(validation.sum()), classes=len(pool.class_names))
    return model.eval(), processor, record


def _accuracy(model: ViTModel, head: _CosineClassifier, pixel_values: torch.Tensor, labels: np.ndarray) -> float:
    if len(labels) == 0:
        return float("nan")
    with torch.no_grad():
        predictions = head(cls_embeddings(model, pixel_values)).argmax(dim=1).numpy()
    return float((predictions == labels).mean())


@dataclass(frozen=True)
class ZeroShotSplit:
    """A UML-mini split decoded once for zero-shot scoring: its images (``(N, 32, 32, 3)`` uint8) and the columns
    retrieval reads. The per-epoch probe and the final record score the same decoded split, never decoding it again."""

    images: np.ndarray
    columns: dict[str, list]

    @classmethod
    def of(cls, split: Any) -> ZeroShotSplit:
        images = np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image in split["image"]])
        return cls(images, {name: split[name] for name in ("label", "dataset", "role")})

    def pixels(self, processor: ViTImageProcessorPil) -> torch.Tensor:
        """The images as the backbone's processor feeds them to it."""
        return torch.from_numpy(processor(images=list(self.images), return_tensors="np")["pixel_values"])

    def recall(self, embeddings: torch.Tensor) -> dict[str, float]:
        """Recall@1 of cosine kNN per domain, unified and harmonic, with the split's query/gallery roles."""
        from ..evaluation import evaluate_retrieval  # the pretraining script alone needs it; keeps import light

        columns = self.columns
        result = evaluate_retrieval(embeddings, columns["label"], columns["dataset"], ks=(1,), roles=columns["role"])
        row = {domain: scores["recall@1"] for domain, scores in result["per_dataset"].items()}
        return {**row, "unified": result["unified"]["recall@1"], "harmonic": result["harmonic"]["recall@1"]}

    def score(self, model: ViTModel, processor: ViTImageProcessorPil) -> dict[str, float]:
        """The backbone's CLS features scored zero-shot: the probe :func:`pretrain` calls after every epoch."""
        return self.recall(cls_embeddings(model, self.pixels(processor)))


def zero_shot_recall(
    model: ViTModel, processor: ViTImageProcessorPil, split: ZeroShotSplit
) -> dict[str, dict[str, float]]:
    """Recall@1 of cosine kNN on a UML-mini split, per domain and unified, for the model and two baselines.

    ``raw pixels`` (normalised pixel vectors) and ``untrained`` (the same ViT at its random init) show what the
    pretraining adds; a backbone no better than them would make the frozen-backbone benchmark meaningless.
    """
    pixels = split.pixels(processor)
    torch.manual_seed(0)
    untrained = ViTModel(model.config, add_pooling_layer=False)
    candidates = {
        "pretrained": cls_embeddings(model, pixels),
        "untrained": cls_embeddings(untrained, pixels),
        "raw pixels": pixels.flatten(1),
    }
    return {name: split.recall(embeddings) for name, embeddings in candidates.items()}


def _training_seed(recipe: dict) -> str:
    """The README's words for a training seed other than the pool's (records written before it have none)."""
    seed = recipe.get("training_seed")
    return "" if seed is None else f", training seed {seed}"


def _readme(metadata: dict) -> str:
    """The README written next to the weights; every figure in it comes from this run's ``metadata``."""
    recipe, record, zero_shot = metadata["recipe"], metadata["pretraining"], metadata.get("zero_shot_recall_at_1")
    redraw = (
        ", the two colours of every letter and symbol redrawn at every step" if recipe.get("recolour_glyphs") else ""
    )
    lines = [
        "# uml_mini_vit: a stand-in for a pretrained ViT",
        "",
        "**This is not a real pretrained ViT.** It is a tiny `transformers.ViTModel` (32x32 px, patch 4, width "
        f"{recipe['hidden_size']}, {recipe['num_layers']} layers, {recipe['num_heads']} heads, qkv bias, LayerNorm eps "
        f"1e-6, {metadata['parameters']:,} parameters) that plays the part of the paper's ImageNet ViT-S/16 on the "
        "offline UML-mini benchmark, because no pretrained weights can be downloaded on the project's machines.",
        "",
        f"Made by `{metadata['command']}` (seed {recipe['seed']}{_training_seed(recipe)}, {record['seconds']:.0f} s on "
        f"{metadata['threads']} CPU threads). It was pretrained by supervised cosine-softmax classification on "
        f"material that shares no class and no image with UML-mini (`peft_puma/standin/pool.py`){redraw}:",
        "",
        "| source | classes | images |",
        "|---|---|---|",
        *(f"| {name} | {row['classes']} | {row['images']} |" for name, row in metadata["pool"].items()),
        "",
        f"Held-out accuracy on the pretraining classes ({record['val_images']} images): {record['val_accuracy']:.3f} "
        f"after {record['steps']} steps ({len(record['epochs'])} epochs).",
    ]
    if zero_shot:
        domains = list(zero_shot["pretrained"])
        split = metadata.get("zero_shot_split", "test")  # records written before the validation split scored test
        version = metadata.get("zero_shot_data", {}).get("builder_version", 2)
        lines += [
            "",
            f"Zero-shot Recall@1 (cosine kNN on the CLS token, frozen) on the {split} split of UML-mini (builder "
            f"version {version}), against raw pixels and the same ViT untrained:",
            "",
            "| features | " + " | ".join(domains) + " |",
            "|---|" + "---|" * len(domains),
            *(
                f"| {name} | " + " | ".join(f"{100 * row[d]:.1f}" for d in domains) + " |"
                for name, row in zero_shot.items()
            ),
        ]
    lines += ["", "Load it with `ViTModel.from_pretrained(path, add_pooling_layer=False)` and "
              "`AutoImageProcessor.from_pretrained(path)`. `pretraining.json` holds the full record.", ""]  # fmt: skip
    return "\n".join(lines)


# The folder save_backbone writes; its pretraining record marks it, so only such a folder is ever replaced.
BACKBONE_LAYOUT = OwnedLayout.of(
    "a mini ViT backbone", signature=["pretraining.json"],
    others=["config.json", "model.safetensors", "preprocessor_config.json", "README.md"],
)  # fmt: skip


def save_backbone(out: str, model: ViTModel, processor: ViTImageProcessorPil, metadata: dict) -> None:
    """Write the HF folder (config, safetensors weights, processor) plus ``pretraining.json`` and ``README.md``.

    Written beside ``out`` and moved into place: ``out`` may be new, empty or an earlier backbone of this command.
    """
    staging = make_staging_folder(out)
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        with open(os.path.join(staging, "pretraining.json"), "w", encoding="utf-8") as handle:
            json.dump(metadata, handle, indent=1, ensure_ascii=False)
        with open(os.path.join(staging, "README.md"), "w", encoding="utf-8") as handle:
            handle.write(_readme(metadata))
        move_into_place(staging, out, BACKBONE_LAYOUT)
    except BaseException:
        discard_staging(staging)
        raise
