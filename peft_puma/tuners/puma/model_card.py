"""The PUMA section of an adapter's model card (README.md), written beside ``adapter_config.json``.

PEFT's ``save_pretrained`` writes a generic card (library, base model, PEFT version) before it saves each adapter's
config; the config's own ``save_pretrained`` then adds what a Hub visitor needs to know: the method, the base model,
the settings, and how to load it. Rewriting is idempotent: the section between the markers is replaced.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import PUMAConfig

_BEGIN = "<!-- peft_puma:begin -->"
_END = "<!-- peft_puma:end -->"
_TAGS = ("puma", "peft_puma", "metric-learning", "image-retrieval", "image-feature-extraction")


def render_section(config: PUMAConfig, extra: str = "") -> str:
    base = config.base_model_name_or_path or "(not recorded)"
    parts = []
    if config.use_adapters:
        gate = "static (p = 1)" if config.keep_prob == 1.0 else f"stochastic, keep probability p = {config.keep_prob}"
        layers = "all layers" if config.layers is None else f"layers {config.layers}"
        parts.append(f"- adapters: r = {config.r}, s = {config.scale}, gates {gate}, {layers}")
    if config.use_prompts:
        kind = "conditional prompt pool" if config.conditional_prompts else "single prompt"
        parts.append(f"- prompts: {kind}, M = {config.num_prompts}, L = {config.prompt_length}")
    parts.append(f"- embedding head: Linear(d, {config.embedding_size}) on the CLS token, L2-normalised")
    lines = [
        _BEGIN,
        "## PUMA adapter",
        "",
        "Image-embedding adapter trained with **PUMA** (Parameter-efficient Unified Metric leArning, "
        "[arXiv 2309.08944](https://arxiv.org/abs/2309.08944)) through "
        "[peft_puma](https://pypi.org/project/peft_puma/).",
        "",
        f"- base model: `{base}` (frozen)",
        *parts,
        "",
        "```python",
        "import peft_puma  # registers the PUMA method with PEFT",
        "from peft import PeftModel",
        "from transformers import AutoModel",
        "",
        f'model = PeftModel.from_pretrained(AutoModel.from_pretrained("{base}"), "<this repo or folder>")',
        "embeddings = model(pixel_values=pixel_values).embeddings  # L2-normalised",
        "```",
    ]
    if extra:
        lines += ["", extra.strip()]
    lines.append(_END)
    return "\n".join(lines)


def update_model_card(save_directory: str, config: PUMAConfig, extra: str = "") -> None:
    """Add or replace the PUMA section and tags in ``save_directory/README.md`` (creating the card if needed).

    ``extra`` is markdown appended inside the section, e.g. the training script's results table.
    """
    from huggingface_hub import ModelCard, ModelCardData

    path = os.path.join(save_directory, "README.md")
    card = ModelCard.load(path) if os.path.exists(path) else ModelCard.from_template(ModelCardData())
    card.data["library_name"] = card.data.get("library_name") or "peft"
    card.data["tags"] = sorted(set(card.data.get("tags") or []) | set(_TAGS))
    if config.base_model_name_or_path and not card.data.get("base_model"):
        card.data["base_model"] = config.base_model_name_or_path
    text = card.text
    if _BEGIN in text and _END in text:
        head, rest = text.split(_BEGIN, 1)
        text = head + render_section(config, extra) + rest.split(_END, 1)[1]
    else:
        text = render_section(config, extra) + "\n\n" + text.lstrip()
    card.text = text
    card.save(path)
