"""A finished run as the HF ecosystem reads it: the image processor saved beside the adapter (so that
``pipeline("image-feature-extraction")`` gives ``embed``'s embeddings), the model card (metadata, model-index, loading
code that runs offline for every kind of backbone) and an upload without local paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from PIL import Image
from safetensors.torch import load_file, save_file

from peft_puma import PUMAImageProcessor
from peft_puma.data import make_eval_transform

from .conftest import REPO, run_module

EMBED_TOLERANCE = 1e-5  # issue #27's target: pipeline vs embed, max abs difference


def _card_code(folder: Path) -> str:
    return ModelCard.load(folder / "README.md").text.split("```python\n", 1)[1].split("```", 1)[0]


def _images(count: int, seed: int = 0) -> list[Image.Image]:
    """Non-square images of several sizes and modes: the crop's offsets and the RGB conversion are exercised."""
    rng = np.random.default_rng(seed)
    shapes = [(23, 17), (16, 16), (40, 29), (18, 31)]
    images = []
    for index in range(count):
        height, width = shapes[index % len(shapes)]
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        images.append(image.convert("L") if index % 3 == 2 else image)
    return images


def test_the_run_saves_its_eval_transform_as_an_image_processor_auto_classes_load(finished_run):
    from transformers import AutoImageProcessor

    config, _ = finished_run
    processor = AutoImageProcessor.from_pretrained(config.output_dir)
    assert isinstance(processor, PUMAImageProcessor) and processor.size == 16
    transform = make_eval_transform(16, [0.5] * 3, [0.5] * 3)
    for image in _images(6):
        expected = transform({"image": [image]})["pixel_values"]
        torch.testing.assert_close(processor(image, return_tensors="pt")["pixel_values"], expected, atol=0, rtol=0)


def test_pipeline_gives_the_embeddings_of_the_embed_command(finished_run, tmp_path):
    import datasets
    from transformers import pipeline

    from peft_puma.inference.loading import load_for_inference

    config, _ = finished_run
    output = tmp_path / "test.safetensors"
    command = ["-m", "peft_puma.embed", "--adapter", config.output_dir, "--dataset", config.dataset_path]
    result = run_module([sys.executable, *command, "--split", "test", "--output", str(output)])
    assert result.returncode == 0, result.stderr[-2000:]
    embedded = load_file(output)["embeddings"]
    model, _, _ = load_for_inference(config.output_dir)
    extractor = pipeline("image-feature-extraction", model=model, image_processor=config.output_dir)
    images = [row["image"] for row in datasets.load_from_disk(config.dataset_path)["test"]]
    piped = torch.tensor([row[0] for row in extractor(images, batch_size=8)])
    assert piped.shape == embedded.shape
    assert (piped - embedded).abs().max().item() <= EMBED_TOLERANCE


def test_the_model_card_carries_hub_metadata_and_the_scores_as_model_index(finished_run, tiny_assets):
    config, _ = finished_run
    card = ModelCard.load(Path(config.output_dir) / "README.md")
    data = card.data
    assert data.library_name == "peft" and data.pipeline_tag == "image-feature-extraction"
    assert data.base_model is None  # the tiny backbone is a local folder, named in words
    assert not data.datasets  # a local folder of data is no Hub dataset
    _, results = model_index_to_eval_results(card.data.to_dict()["model-index"])  # the Hub's own parser
    scores = json.loads((Path(config.output_dir) / "results.json").read_text())
    by_name = {result.metric_name: result for result in results}
    assert by_name["Recall@1 (unified gallery)"].metric_value == round(100 * scores["unified"]["recall@1"], 2)
    assert by_name["Recall@1 (harmonic mean over domains)"].metric_value == round(
        100 * scores["harmonic"]["recall@1"], 2
    )
    for domain, metrics in scores["per_dataset"].items():
        entry = by_name[f"Recall@1 ({domain})"]
        assert entry.dataset_config == domain and entry.dataset_split == "test"
        assert entry.metric_value == round(100 * metrics["recall@1"], 2)
    assert {result.task_type for result in results} == {"image-feature-extraction"}
    text = str(card)
    for local in (tiny_assets["backbone"], tiny_assets["dataset"], os.path.dirname(config.output_dir)):
        assert local not in text


def _snapshot(cache: Path, repo_id: str, files_from: Path) -> None:
    """A Hub repository as huggingface_hub caches it, so that offline loads (HF_HUB_OFFLINE=1) find it."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    shutil.copytree(files_from, folder / "snapshots" / commit)


def _run_card_code(code: str, cwd: Path, cache: Path) -> torch.Tensor:
    """The card's loading code, verbatim, in a fresh offline process; returns its embeddings and the pipeline's."""
    script = code + "\nimport torch\ntorch.save((embeddings, torch.tensor(embedding)), 'out.pt')\n"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (21, 19, 3), dtype=np.uint8)).save(cwd / "image.jpg")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "PYTHONPATH": REPO}
    result = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(cwd / "out.pt")


def _expected(run: Path, backbone: torch.nn.Module, cwd: Path) -> torch.Tensor:
    from peft import PeftModel

    model = PeftModel.from_pretrained(backbone, str(run)).eval()
    processor = PUMAImageProcessor.from_pretrained(str(run))
    with Image.open(cwd / "image.jpg") as image:
        return model(**processor(image, return_tensors="pt")).embeddings


def _published(run: Path, destination: Path, repo_id: str) -> Path:
    """The run folder as the upload would publish it (training's push_folder, with a fake Hub)."""
    from peft_puma.training import report

    class FakeApi:
        def create_repo(self, repo_id, exist_ok, private=False):
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, *, repo_id, folder_path, commit_message):
            shutil.copytree(folder_path, destination)

    original, report.HfApi = report.HfApi, FakeApi
    try:
        report.push_folder(str(run), repo_id)
    finally:
        report.HfApi = original
    return destination


@pytest.mark.parametrize("kind", ["local folder", "Hub transformers id"])
def test_the_card_loading_code_runs_offline_for_a_run(finished_run, tiny_assets, tmp_path, kind):
    """Executed from the rendered card as a visitor pastes it: a local backbone beside the script, or a transformers
    model from the Hub (a cached repository, offline)."""
    from transformers import ViTModel

    config, _ = finished_run
    run, cache, cwd = tmp_path / "run", tmp_path / "cache", tmp_path / "work"
    shutil.copytree(config.output_dir, run, ignore=shutil.ignore_patterns("checkpoints", ".*"))
    cwd.mkdir()
    if kind == "local folder":
        shutil.copytree(tiny_assets["backbone"], cwd / Path(tiny_assets["backbone"]).name)
        shutil.copytree(run, cwd / run.name)
        code = _card_code(run)
    else:
        adapter_config = json.loads((run / "adapter_config.json").read_text())
        adapter_config["base_model_name_or_path"] = "someone/tiny-vit"
        (run / "adapter_config.json").write_text(json.dumps(adapter_config))
        _snapshot(cache, "someone/tiny-vit", Path(tiny_assets["backbone"]))
        code = _published_code(run, tmp_path, cache, "someone/tiny-vit")
    embeddings, piped = _run_card_code(code, cwd, cache)
    expected = _expected(run, ViTModel.from_pretrained(tiny_assets["backbone"], add_pooling_layer=False), cwd)
    torch.testing.assert_close(embeddings, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(piped, expected[0], atol=1e-5, rtol=0)


def test_the_card_loading_code_runs_offline_for_a_timm_backbone_from_the_hub(tmp_path):
    """The paper's kind of backbone: a timm checkpoint on the Hub, which transformers cannot load as a ViTModel; the
    card loads it with peft_puma's converting loader."""
    from peft import get_peft_model
    from transformers import ViTConfig, ViTModel

    import peft_puma
    from peft_puma.backbones import load_timm_vit

    torch.manual_seed(0)
    width_192 = ViTConfig(hidden_size=192, num_hidden_layers=1, num_attention_heads=3, intermediate_size=96,
                          image_size=16, patch_size=4, layer_norm_eps=1e-6)  # fmt: skip
    timm, cache, cwd, run = tmp_path / "timm", tmp_path / "cache", tmp_path / "work", tmp_path / "run"
    timm.mkdir()
    cwd.mkdir()
    save_file(_timm_state(ViTModel(width_192, add_pooling_layer=False)), str(timm / "model.safetensors"))
    statistics = {"input_size": [3, 16, 16], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic"}
    (timm / "config.json").write_text(
        json.dumps({"architecture": "vit_tiny_patch4_16", "num_classes": 0, "pretrained_cfg": statistics})
    )
    hub_id = "timm/vit_tiny_patch4_16.test"
    _snapshot(cache, hub_id, timm)
    backbone = load_timm_vit(str(timm))
    backbone.name_or_path = hub_id  # as peft_puma's backbone loader records a timm Hub id
    model = get_peft_model(backbone, peft_puma.PUMAConfig(r=4, num_prompts=2, prompt_length=2, embedding_size=8))
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data.normal_(0, 0.2)
    model.save_pretrained(run)
    PUMAImageProcessor(16, [0.5] * 3, [0.5] * 3).save_pretrained(run)
    code = _published_code(run, tmp_path, cache, hub_id)
    assert f'load_timm_vit("{hub_id}")' in code
    embeddings, piped = _run_card_code(code, cwd, cache)
    expected = _expected(run, load_timm_vit(str(timm)), cwd)
    torch.testing.assert_close(embeddings, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(piped, expected[0], atol=1e-5, rtol=0)


def _timm_state(backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A transformers ViT written back under timm's names (the converter's inverse), to stand for a timm repo."""
    state = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    timm = {
        "cls_token": state["embeddings.cls_token"],
        "pos_embed": state["embeddings.position_embeddings"],
        "patch_embed.proj.weight": state["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": state["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": state["layernorm.weight"],
        "norm.bias": state["layernorm.bias"],
    }
    prefix = "layers" if any(k.startswith("layers.") for k in state) else "encoder.layer"
    for i in range(backbone.config.num_hidden_layers):
        layer = {k[len(f"{prefix}.{i}.") :]: v for k, v in state.items() if k.startswith(f"{prefix}.{i}.")}

        def get(*names: str, layer: dict = layer) -> torch.Tensor:  # the module names of either ViT layout
            return next(layer[name] for name in names if name in layer)

        q, k, v = ("attention.attention.query", "attention.attention.key", "attention.attention.value")
        q2, k2, v2 = ("attention.q_proj", "attention.k_proj", "attention.v_proj")
        block = f"blocks.{i}."
        timm |= {
            block + "norm1.weight": get("layernorm_before.weight"),
            block + "norm1.bias": get("layernorm_before.bias"),
            block + "attn.qkv.weight": torch.cat(
                [get(f"{a}.weight", f"{b}.weight") for a, b in ((q, q2), (k, k2), (v, v2))]
            ),
            block + "attn.qkv.bias": torch.cat([get(f"{a}.bias", f"{b}.bias") for a, b in ((q, q2), (k, k2), (v, v2))]),
            block + "attn.proj.weight": get("attention.output.dense.weight", "attention.o_proj.weight"),
            block + "attn.proj.bias": get("attention.output.dense.bias", "attention.o_proj.bias"),
            block + "norm2.weight": get("layernorm_after.weight"),
            block + "norm2.bias": get("layernorm_after.bias"),
            block + "mlp.fc1.weight": get("intermediate.dense.weight", "mlp.fc1.weight"),
            block + "mlp.fc1.bias": get("intermediate.dense.bias", "mlp.fc1.bias"),
            block + "mlp.fc2.weight": get("output.dense.weight", "mlp.fc2.weight"),
            block + "mlp.fc2.bias": get("output.dense.bias", "mlp.fc2.bias"),
        }
    return {key: value.contiguous() for key, value in timm.items()}


def _published_code(run: Path, tmp_path: Path, cache: Path, base_model: str) -> str:
    """Publish ``run`` as ``me/puma-tiny`` into the offline cache; the published card's loading code."""
    published = _published(run, tmp_path / "published", "me/puma-tiny")
    _snapshot(cache, "me/puma-tiny", published)
    assert ModelCard.load(published / "README.md").data.base_model == base_model
    code = _card_code(published)
    assert '"me/puma-tiny"' in code and f'"{base_model}"' in code
    return code


def test_an_upload_holds_no_local_path_and_can_create_a_private_repository(finished_run, tiny_assets, tmp_path):
    from peft_puma.training import report

    config, _ = finished_run
    calls = {}

    class FakeApi:
        def create_repo(self, repo_id, exist_ok, private=False):
            calls["create"] = (repo_id, exist_ok, private)
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, *, repo_id, folder_path, commit_message):
            calls["files"] = {
                os.path.relpath(os.path.join(root, name), folder_path): Path(root, name).read_bytes()
                for root, _, names in os.walk(folder_path)
                for name in names
            }

    original, report.HfApi = report.HfApi, FakeApi
    try:
        url = report.push_folder(config.output_dir, "me/puma-tiny", private=True)
    finally:
        report.HfApi = original
    assert url == "https://huggingface.co/me/puma-tiny" and calls["create"] == ("me/puma-tiny", True, True)
    files = calls["files"]
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "preprocessor_config.json"} <= set(files)
    assert "results.json" in files and "retrieval_examples.png" in files
    assert not [name for name in files if name.startswith(("checkpoints", "logs", ".", "peft_puma_training"))]
    locals_ = [tiny_assets["backbone"], tiny_assets["dataset"], os.path.dirname(os.path.abspath(config.output_dir))]
    leaks = [(name, path) for name, data in files.items() for path in locals_ if path.encode() in data]
    assert not leaks
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] is None
    # The run folder itself keeps what it rebuilds the model from: the upload was a copy.
    saved = json.loads((Path(config.output_dir) / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == tiny_assets["backbone"]


def test_pipeline_equals_embed_on_the_uml_mini_test_split_with_the_stand_in_backbone(tmp_path):
    """Issue #27's target, on real glyph and clothing images of every UML-mini domain (a 10% build) and the committed
    stand-in backbone, with an adapter of random weights (so every part of PUMA moves the embedding)."""
    import datasets
    from peft import get_peft_model
    from transformers import pipeline

    import peft_puma
    from peft_puma.backbones.loading import load_backbone
    from peft_puma.data.uml_mini import UMLMiniConfig, load_or_build_uml_mini
    from peft_puma.inference.loading import load_for_inference

    uml = str(tmp_path / "uml")
    load_or_build_uml_mini(uml, UMLMiniConfig(seed=0, scale=0.1))
    standin = os.path.join(REPO, "assets", "uml_mini_vit")
    backbone, processor = load_backbone(standin)
    torch.manual_seed(0)
    model = get_peft_model(backbone, peft_puma.PUMAConfig())
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data.normal_(0, 0.05)
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    PUMAImageProcessor.for_backbone(processor).save_pretrained(adapter)
    output = tmp_path / "test.safetensors"
    command = ["-m", "peft_puma.embed", "--adapter", str(adapter), "--dataset", uml, "--output", str(output)]
    result = run_module([sys.executable, *command])
    assert result.returncode == 0, result.stderr[-2000:]
    embedded = load_file(output)["embeddings"]
    fused, _, _ = load_for_inference(str(adapter))
    extractor = pipeline("image-feature-extraction", model=fused, image_processor=str(adapter))
    test = datasets.load_from_disk(uml)["test"]
    assert len(set(test["dataset"])) == 6
    piped = torch.tensor([row[0] for row in extractor([row["image"] for row in test], batch_size=64)])
    assert piped.shape == embedded.shape
    assert (piped - embedded).abs().max().item() <= EMBED_TOLERANCE


@pytest.mark.parametrize("fuse", [True, False])
def test_the_eval_model_exports_with_torch_export_and_a_dynamic_batch(finished_run, tmp_path, fuse):
    """docs/puma.md's torch.export route: the program saved and loaded again gives the model's embeddings."""
    from peft_puma.inference.loading import load_for_inference

    config, _ = finished_run
    model, _, _ = load_for_inference(config.output_dir, fuse=fuse)

    class Embeddings(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.model(pixel_values=pixel_values).embeddings

    wrapped = Embeddings(model).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(wrapped, (torch.randn(2, 3, 16, 16),), dynamic_shapes={"pixel_values": {0: batch}})
    torch.export.save(program, tmp_path / "puma.pt2")
    pixels = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    exported = torch.export.load(tmp_path / "puma.pt2").module()
    torch.testing.assert_close(exported(pixels), wrapped(pixels), atol=1e-6, rtol=0)
    torch.save(pixels, tmp_path / "pixels.pt")
    blocked = "import sys\nfor name in ('peft', 'peft_puma', 'transformers'):\n    sys.modules[name] = None\n"
    program_file, pixels_file = str(tmp_path / "puma.pt2"), str(tmp_path / "pixels.pt")
    run = f"torch.export.load({program_file!r}).module()(torch.load({pixels_file!r}))"
    script = blocked + f"import torch\nprint(tuple({run}.shape))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "(5, 16)", result.stderr[-1000:]  # torch alone runs it
