"""The model card (README.md) written beside every saved PUMA adapter, through ``huggingface_hub``'s ``ModelCard``.

The card is our own, not PEFT's generic template (whose sections all read "[More Information Needed]"): a title, what
PUMA is (arXiv 2309.08944), loading code that runs for the adapter's kind of backbone, its configuration, an optional
section from the caller (the training script's results table) and the framework versions. Its metadata is what the Hub
indexes: ``library_name: peft``, ``pipeline_tag: image-feature-extraction``, tags, ``base_model`` as a Hub id (never
a local path: a local backbone is named in words), ``datasets`` (Hub ids) and the scores as ``model-index`` results
(:class:`CardResults`), which the Hub shows and searches.

``PeftModelForImageEmbedding.create_or_update_model_card`` (called by ``save_pretrained`` before the adapters are
saved) and ``PUMAConfig.save_pretrained`` (called for each adapter's folder) both write it through
:func:`update_model_card`. Rewriting is idempotent: the part between the markers is replaced, text a user added outside
them is kept, and a generic template found there (an older save, or another PeftModel class) is dropped. The caller's
section and the results survive a rewrite that does not give new ones (a re-save, an upload's rewrite for its repo id).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import peft
from transformers.utils import IMAGE_PROCESSOR_NAME

if TYPE_CHECKING:
    from .config import PUMAConfig

_BEGIN = "<!-- peft_puma:begin -->"
_END = "<!-- peft_puma:end -->"
_EXTRA_BEGIN = "<!-- peft_puma:details -->"
_EXTRA_END = "<!-- peft_puma:details-end -->"
_TAGS = ("puma", "peft_puma", "metric-learning", "image-retrieval", "image-feature-extraction")
PIPELINE_TAG = "image-feature-extraction"
# Every section of the Hub's generic model-card template (which PEFT's create_or_update_model_card fills) reads this.
TEMPLATE_PLACEHOLDER = "[More Information Needed]"
# The transformers class that loads a plain backbone of each family (AutoModel would give CLIP's joint model).
_BACKBONE_CLASS = {"clip": "CLIPVisionModel"}
_TIMM_PREFIXES = ("timm/", "hf-hub:timm/")


@dataclass(frozen=True)
class BackboneSource:
    """Where an adapter's backbone comes from, as its card tells a reader: a Hub id, or a local folder by name."""

    hub_id: str | None  # the Hub repository (the card's ``base_model``); None for a local folder or an unknown one
    loader: str  # "transformers" (``from_pretrained``) or "timm" (peft_puma's converting loader)
    local_name: str | None = None  # the folder's name, for a backbone that is not on the Hub

    @property
    def reference(self) -> str:
        """What the loading code passes to the loader."""
        return self.hub_id or self.local_name or "<base model>"


def backbone_source(base_model_name_or_path: str | None) -> BackboneSource:
    """Read what PEFT recorded as the base model: a Hub id stays one; a timm Hub id (``timm/...``, ``hf-hub:timm/...``)
    loads with peft_puma's timm loader; a local folder is named by its folder name, unless it was converted from a timm
    Hub id (its config.json records ``timm_source``), which then is the base model."""
    source = (base_model_name_or_path or "").strip()
    if not source:
        return BackboneSource(None, "transformers")
    if is_local_path(source):
        timm_source = _recorded_timm_source(source)
        if timm_source:
            return backbone_source(timm_source)
        return BackboneSource(None, "transformers", os.path.basename(os.path.normpath(source)))
    if source.startswith(_TIMM_PREFIXES):
        return BackboneSource(source.removeprefix("hf-hub:"), "timm")
    return BackboneSource(source, "transformers")


def is_local_path(source: str) -> bool:
    """A path on this machine rather than a Hub id (which has one ``/`` and exists nowhere here)."""
    return os.path.exists(source) or source.startswith((".", "/", "~")) or source.count("/") > 1


def _recorded_timm_source(folder: str) -> str | None:
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
            source = json.load(handle).get("timm_source")
    except (OSError, ValueError, AttributeError):
        return None
    return source if isinstance(source, str) and not is_local_path(source) else None


@dataclass(frozen=True)
class CardResults:
    """Retrieval scores for the card's ``model-index``: Recall@1 per domain, unified and harmonic (fractions)."""

    dataset_name: str  # shown by the Hub, e.g. "UML-mini" or a Hub dataset id
    dataset_type: str  # a Hub dataset id, or a short name for data that is not on the Hub
    split: str
    per_domain: Mapping[str, float]
    unified: float
    harmonic: float | None = None
    on_hub: bool = False  # dataset_type is a Hub dataset id (listed under ``datasets``)

    def eval_results(self) -> list:
        from huggingface_hub import EvalResult

        def result(metric_type: str, metric_name: str, value: float, config: str | None = None) -> EvalResult:
            return EvalResult(
                task_type=PIPELINE_TAG,
                task_name="Image retrieval",
                dataset_type=self.dataset_type,
                dataset_name=self.dataset_name,
                dataset_config=config,
                dataset_split=self.split,
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=round(100.0 * float(value), 2),
            )

        results = [result("recall_at_1", "Recall@1 (unified gallery)", self.unified)]
        if self.harmonic is not None:
            results.append(result("harmonic_recall_at_1", "Recall@1 (harmonic mean over domains)", self.harmonic))
        results += [result("recall_at_1", f"Recall@1 ({d})", v, d) for d, v in self.per_domain.items()]
        return results


def render_section(
    config: PUMAConfig,
    extra: str = "",
    subfolder: str | None = None,
    *,
    adapter_ref: str = "<this repo or folder>",
    has_processor: bool = False,
) -> str:
    """The card's body, between the markers: title, method, loading code, configuration, ``extra``, versions."""
    from ... import __version__ as peft_puma_version  # deferred: the package's __init__ imports this module

    backbone = backbone_source(config.base_model_name_or_path)
    lines = [
        _BEGIN,
        f"# PUMA adapter for `{backbone.hub_id}`" if backbone.hub_id else "# PUMA adapter",
        "",
        "An image-embedding adapter trained with **PUMA** (Parameter-efficient Unified Metric leArning, "
        "[arXiv 2309.08944](https://arxiv.org/abs/2309.08944)). PUMA keeps a pretrained ViT frozen and trains only "
        "stochastic adapters in parallel with its attention and MLP blocks, a conditional prompt pool and a small "
        "embedding head; the model returns L2-normalised embeddings for image retrieval.",
        "",
        "## How to load it",
        "",
        "This adapter was made with the peft_puma library, which registers PUMA with PEFT: install peft_puma from its "
        "source repository and `import peft_puma` before loading (without it, PEFT stops with `KeyError: 'PUMA'`).",
        "",
        *_backbone_note(backbone),
        "```python",
        *_loading_code(config, backbone, adapter_ref, subfolder, has_processor),
        "```",
        "",
        "transformers' own adapter loading (`model.load_adapter`, `AutoModel.from_pretrained(<adapter>)`, "
        '`pipeline(..., model="<adapter>")`) does not support PUMA and refuses it; load the model as above and hand it '
        "to `pipeline` as an object.",
        "",
        "## Configuration",
        "",
        "| part | setting |",
        "|---|---|",
        f"| base model | {_base_model_cell(backbone)}, frozen ({config.backbone_family or 'family not recorded'}) |",
        f"| adapters | {_adapter_summary(config)} |",
        f"| prompts | {_prompt_summary(config)} |",
        f"| embedding head | Linear(d, {config.embedding_size}) on the CLS token, L2-normalised |",
        "",
        "Every setting is in `adapter_config.json`.",
    ]
    if extra and extra.strip():
        extra = extra.strip()
        # The caller's markdown gets a section of its own unless it starts one (its "###" headings then sit under it).
        body = [extra] if extra.startswith(("# ", "## ")) else ["## Details", "", extra]
        lines += ["", _EXTRA_BEGIN, *body, _EXTRA_END]
    lines += ["", "## Framework versions", "", f"- PEFT {peft.__version__}", f"- peft_puma {peft_puma_version}", _END]
    return "\n".join(lines)


def _base_model_cell(backbone: BackboneSource) -> str:
    if backbone.hub_id:
        return f"`{backbone.hub_id}`"
    return f"a local backbone ({backbone.local_name})" if backbone.local_name else "(not recorded)"


def _backbone_note(backbone: BackboneSource) -> list[str]:
    if backbone.hub_id or not backbone.local_name:
        return []
    return [
        f"The backbone is a local folder, `{backbone.local_name}`, not a Hub repository: the code below loads it from "
        "a copy of that folder beside your script.",
        "",
    ]


def _loading_code(
    config: PUMAConfig, backbone: BackboneSource, adapter_ref: str, subfolder: str | None, has_processor: bool
) -> list[str]:
    where = f'"{adapter_ref}"' + (f", subfolder={subfolder!r}" if subfolder else "")
    backbone_class = _BACKBONE_CLASS.get(config.backbone_family or "", "AutoModel")
    imports = ["import peft_puma  # registers the PUMA method with PEFT", "from peft import PeftModel"]
    if backbone.loader == "timm":
        imports.append("from peft_puma.backbones import load_timm_vit")
        load = f'backbone = load_timm_vit("{backbone.reference}")'
    else:
        # ViT and DeiT would build a pooler PUMA never reads (and warn that it is newly initialised).
        pooler = ", add_pooling_layer=False" if config.backbone_family in ("vit", "deit") else ""
        load = f'backbone = {backbone_class}.from_pretrained("{backbone.reference}"{pooler})'
    transformers_names = ([backbone_class] if backbone.loader != "timm" else []) + (
        ["AutoImageProcessor", "pipeline"] if has_processor else []
    )
    if transformers_names:
        imports.append(f"from transformers import {', '.join(sorted(transformers_names))}")
    code = [*imports, "", load, f"model = PeftModel.from_pretrained(backbone, {where}).eval()"]
    size = config.embedding_size
    if has_processor:
        code += [
            f"processor = AutoImageProcessor.from_pretrained({where})  # PUMA's eval transform, saved with the adapter",
            "",
            "from PIL import Image",
            "",
            'inputs = processor(Image.open("image.jpg"), return_tensors="pt")',
            f"embeddings = model(**inputs).embeddings  # (1, {size}), L2-normalised",
            "",
            "# or as a transformers pipeline",
            'extractor = pipeline("image-feature-extraction", model=model, image_processor=processor)',
            f'embedding = extractor("image.jpg")[0]  # {size} floats',
        ]
    else:
        code.append(
            f"embeddings = model(pixel_values=pixel_values).embeddings  # (batch, {size}), L2-normalised; pixel_values "
            "from peft_puma.data.make_eval_transform"
        )
    return code


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
    extra: str | None = None,
    *,
    tags: Iterable[str] = (),
    subfolder: str | None = None,
    results: CardResults | None = None,
    adapter_ref: str | None = None,
) -> None:
    """Write ``save_directory/README.md`` for the PUMA adapter of ``config``, or refresh the one there.

    ``extra`` is markdown added to the card, e.g. the training script's results table (``None`` keeps the one already
    there); ``tags`` are added to the metadata; ``subfolder`` is where the adapter lies under ``save_directory`` when
    not in it; ``results`` become the card's model-index (kept when not given); ``adapter_ref`` is what the loading
    code loads the adapter from (default: the folder's name; an upload gives its repository id).
    """
    from huggingface_hub import ModelCard, ModelCardData

    path = os.path.join(save_directory, "README.md")
    card = ModelCard.load(path) if os.path.exists(path) else ModelCard(f"---\nlibrary_name: peft\n---\n{_BEGIN}{_END}")
    head, section, tail = _split(card.text)
    if extra is None:
        extra = _previous_extra(section)
    data = card.data.to_dict()
    if results is not None:
        data.pop("model-index", None)
        data.pop("model_index", None)
    metadata = ModelCardData(**data)
    metadata.library_name = metadata.library_name or "peft"
    metadata.pipeline_tag = PIPELINE_TAG
    hub_id = backbone_source(config.base_model_name_or_path).hub_id
    # PEFT tags an adapter "base_model:adapter:<base model>": with a local backbone that is a path on this machine.
    every = set(metadata.tags or []) | set(_TAGS) | set(tags)
    metadata.tags = sorted(tag for tag in every if not tag.startswith("base_model:") or tag.endswith(f":{hub_id}"))
    if hub_id:
        metadata.base_model = hub_id
    elif isinstance(metadata.base_model, str) and is_local_path(metadata.base_model):
        metadata.base_model = None  # an older card recorded a local path: never a Hub id
    if results is not None:
        metadata.model_name = metadata.model_name or f"PUMA adapter ({adapter_ref or _folder_name(save_directory)})"
        metadata.eval_results = results.eval_results()
        if results.on_hub:
            metadata.datasets = sorted(set(_as_list(metadata.datasets)) | {results.dataset_type})
    card.data = metadata
    body = render_section(
        config,
        extra,
        subfolder,
        adapter_ref=adapter_ref or _folder_name(save_directory),
        has_processor=os.path.isfile(os.path.join(save_directory, subfolder or "", IMAGE_PROCESSOR_NAME)),
    )
    # Text outside the markers is the user's and stays, unless it is the generic template (an older save, or the card
    # of another PeftModel class): that one is dropped.
    head, tail = ("" if TEMPLATE_PLACEHOLDER in part else part.strip() for part in (head, tail))
    card.text = "\n\n".join(part for part in (head, body, tail) if part) + "\n"
    card.save(path)


def _split(text: str) -> tuple[str, str, str]:
    if _BEGIN in text and _END in text:
        head, rest = text.split(_BEGIN, 1)
        section, tail = rest.split(_END, 1)
        return head, section, tail
    return "", "", text


def _previous_extra(section: str) -> str:
    if _EXTRA_BEGIN in section and _EXTRA_END in section:
        return section.split(_EXTRA_BEGIN, 1)[1].split(_EXTRA_END, 1)[0].strip()
    return ""


def _folder_name(directory: str) -> str:
    return os.path.basename(os.path.normpath(os.path.abspath(directory)))


def _as_list(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)
