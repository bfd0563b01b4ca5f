"""The model card (README.md) written beside every saved PUMA adapter.

The card is our own, not PEFT's generic template (whose sections all read "[More Information Needed]"): a title, what
PUMA is (arXiv 2309.08944), how to load the adapter, its configuration, an optional ``extra`` section from the caller
(e.g. the training script's results table) and the framework versions. Its metadata header keeps what PEFT and the Hub
read: ``library_name: peft``, ``base_model`` where known, and tags.

``PeftModelForImageEmbedding.create_or_update_model_card`` (called by ``save_pretrained`` before the adapters are
saved) and ``PUMAConfig.save_pretrained`` (called for each adapter's folder) both write it through
:func:`update_model_card`. Rewriting is idempotent: the part between the markers is replaced, text a user added outside
them is kept, and a generic template found there (an older save, or another PeftModel class) is dropped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

import peft

if TYPE_CHECKING:
    from .config import PUMAConfig

_BEGIN = "<!-- peft_puma:begin -->"
_END = "<!-- peft_puma:end -->"
_TAGS = ("puma", "peft_puma", "metric-learning", "image-retrieval", "image-feature-extraction")
# Every section of the Hub's generic model-card template (which PEFT's create_or_update_model_card fills) reads this.
TEMPLATE_PLACEHOLDER = "[More Information Needed]"
# The transformers class that loads a plain backbone of each family (AutoModel would give CLIP's joint model).
_BACKBONE_CLASS = {"clip": "CLIPVisionModel"}


def render_section(config: PUMAConfig, extra: str = "", subfolder: str | None = None) -> str:
    """The card's body, between the markers: title, method, loading code, configuration, ``extra``, versions."""
    from ... import __version__ as peft_puma_version  # deferred: the package's __init__ imports this module

    base = config.base_model_name_or_path
    backbone_class = _BACKBONE_CLASS.get(config.backbone_family or "", "AutoModel")
    where = '"<this repo or folder>"' + (f", subfolder={subfolder!r}" if subfolder else "")
    lines = [
        _BEGIN,
        f"# PUMA adapter for `{base}`" if base else "# PUMA adapter",
        "",
        "An image-embedding adapter trained with **PUMA** (Parameter-efficient Unified Metric leArning, "
        "[arXiv 2309.08944](https://arxiv.org/abs/2309.08944)). PUMA keeps a pretrained ViT frozen and trains only "
        "stochastic adapters in parallel with its attention and MLP blocks, a conditional prompt pool and a small "
        "embedding head; the model returns L2-normalised embeddings for image retrieval.",
        "",
        "## How to load it",
        "",
        "This adapter was made with the peft_puma library, which registers PUMA with PEFT: install peft_puma from its "
        "source repository and `import peft_puma` before loading.",
        "",
        "```python",
        "import peft_puma  # registers the PUMA method with PEFT",
        "from peft import PeftModel",
        f"from transformers import {backbone_class}",
        "",
        f'backbone = {backbone_class}.from_pretrained("{base or "<base model>"}")',
        f"model = PeftModel.from_pretrained(backbone, {where}).eval()",
        f"embeddings = model(pixel_values=pixel_values).embeddings  # (batch, {config.embedding_size}), L2-normalised",
        "```",
        "",
        "transformers' own adapter loading (`model.load_adapter`, `AutoModel.from_pretrained(<adapter>)`) does not "
        "support PUMA and refuses it; use `PeftModel.from_pretrained` as above.",
        "",
        "## Configuration",
        "",
        "| part | setting |",
        "|---|---|",
        f"| base model | `{base or '(not recorded)'}`, frozen ({config.backbone_family or 'family not recorded'}) |",
        f"| adapters | {_adapter_summary(config)} |",
        f"| prompts | {_prompt_summary(config)} |",
        f"| embedding head | Linear(d, {config.embedding_size}) on the CLS token, L2-normalised |",
        "",
        "Every setting is in `adapter_config.json`.",
    ]
    if extra and extra.strip():
        extra = extra.strip()
        # The caller's markdown gets a section of its own unless it starts one (its "###" headings then sit under it).
        lines += ["", extra] if extra.startswith(("# ", "## ")) else ["", "## Details", "", extra]
    lines += ["", "## Framework versions", "", f"- PEFT {peft.__version__}", f"- peft_puma {peft_puma_version}", _END]
    return "\n".join(lines)


def _adapter_summary(config: PUMAConfig) -> str:
    if not config.use_adapters:
        return "none"
    gate = "static (p = 1)" if config.keep_prob == 1.0 else f"stochastic, keep probability p = {config.keep_prob}"
    layers = "all layers" if config.layers is None else f"layers {config.layers}"
    learned = ", s learned" if config.train_scale else ""
    return f"r = {config.r}, s = {config.scale}{learned}, gates {gate}, {layers}"


def _prompt_summary(config: PUMAConfig) -> str:
    if not config.use_prompts:
        return "none"
    kind = "conditional prompt pool" if config.conditional_prompts else "single prompt"
    return f"{kind}, M = {config.num_prompts}, L = {config.prompt_length}"


def update_model_card(
    save_directory: str,
    config: PUMAConfig,
    extra: str = "",
    *,
    tags: Iterable[str] = (),
    subfolder: str | None = None,
) -> None:
    """Write ``save_directory/README.md`` for the PUMA adapter of ``config``, or refresh the one there.

    ``extra`` is markdown added to the card, e.g. the training script's results table; ``tags`` are added to the
    metadata; ``subfolder`` is where the adapter lies under ``save_directory`` when not in it.
    """
    from huggingface_hub import ModelCard

    path = os.path.join(save_directory, "README.md")
    card = ModelCard.load(path) if os.path.exists(path) else ModelCard(f"---\nlibrary_name: peft\n---\n{_BEGIN}{_END}")
    card.data["library_name"] = card.data.get("library_name") or "peft"
    card.data["tags"] = sorted(set(card.data.get("tags") or []) | set(_TAGS) | set(tags))
    if config.base_model_name_or_path and not card.data.get("base_model"):
        card.data["base_model"] = config.base_model_name_or_path
    head, tail = "", card.text
    if _BEGIN in tail and _END in tail:
        head, rest = tail.split(_BEGIN, 1)
        tail = rest.split(_END, 1)[1]
    # Text outside the markers is the user's and stays, unless it is the generic template (an older save, or the card
    # of another PeftModel class): that one is dropped.
    head, tail = ("" if TEMPLATE_PLACEHOLDER in part else part.strip() for part in (head, tail))
    card.text = "\n\n".join(part for part in (head, render_section(config, extra, subfolder), tail) if part) + "\n"
    card.save(path)
