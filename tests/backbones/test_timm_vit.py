"""Specification of the timm ViT loader: timm tensors in, an exactly equivalent HF ViT out, unsupported inputs refused.

The reference below is timm's ``VisionTransformer`` forward written out by hand (class token, token pooling, pre-norm
blocks, fused qkv, exact GELU, LayerNorm eps 1e-6), so the mapping is checked without timm installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoImageProcessor, ViTForImageClassification, ViTModel
from transformers.image_utils import PILImageResampling

from peft_puma.backbones import timm_vit
from peft_puma.backbones.timm_vit import __main__ as timm_vit_command
from peft_puma.backbones.timm_vit import (
    convert_timm_vit_checkpoint,
    convert_timm_vit_state_dict,
    load_timm_vit,
    load_timm_vit_with_processor,
    read_timm_checkpoint,
    timm_image_processor,
)
from peft_puma.errors import IncompatibleCheckpointError, InvalidConfigError, PUMAError, UnsupportedModelError

WIDTH, DEPTH, HEADS, PATCH, IMAGE, MLP, CLASSES = 32, 2, 2, 4, 16, 64, 5
EPS = 1e-6
AUGREG_CONFIG = {
    "architecture": "vit_tiny_patch4_16",
    "num_classes": CLASSES,
    "global_pool": "token",
    "pretrained_cfg": {
        "tag": "augreg_in21k_ft_in1k",
        "input_size": [3, IMAGE, IMAGE],
        "interpolation": "bicubic",
        "crop_pct": 0.9,
        "crop_mode": "center",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "num_classes": CLASSES,
        "classifier": "head",
    },
}


def make_timm_state_dict(seed: int = 0, qkv_bias: bool = True, num_classes: int = CLASSES) -> dict[str, torch.Tensor]:
    """Random tensors under timm's ViT names and shapes (LayerNorm gains near 1 so every path matters)."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.2, offset: float = 0.0) -> torch.Tensor:
        return offset + scale * torch.randn(*shape, generator=generator)

    grid = (IMAGE // PATCH) ** 2
    state = {
        "cls_token": rand(1, 1, WIDTH),
        "pos_embed": rand(1, 1 + grid, WIDTH),
        "patch_embed.proj.weight": rand(WIDTH, 3, PATCH, PATCH),
        "patch_embed.proj.bias": rand(WIDTH),
        "norm.weight": rand(WIDTH, offset=1.0),
        "norm.bias": rand(WIDTH),
    }
    for index in range(DEPTH):
        block = f"blocks.{index}."
        state |= {
            block + "norm1.weight": rand(WIDTH, offset=1.0),
            block + "norm1.bias": rand(WIDTH),
            block + "attn.qkv.weight": rand(3 * WIDTH, WIDTH),
            block + "attn.proj.weight": rand(WIDTH, WIDTH),
            block + "attn.proj.bias": rand(WIDTH),
            block + "norm2.weight": rand(WIDTH, offset=1.0),
            block + "norm2.bias": rand(WIDTH),
            block + "mlp.fc1.weight": rand(MLP, WIDTH),
            block + "mlp.fc1.bias": rand(MLP),
            block + "mlp.fc2.weight": rand(WIDTH, MLP),
            block + "mlp.fc2.bias": rand(WIDTH),
        }
        if qkv_bias:
            state[block + "attn.qkv.bias"] = rand(3 * WIDTH)
    if num_classes:
        state |= {"head.weight": rand(num_classes, WIDTH), "head.bias": rand(num_classes)}
    return state


def reference_timm_forward(
    state: dict[str, torch.Tensor], pixels: torch.Tensor, num_heads: int = HEADS
) -> tuple[torch.Tensor, torch.Tensor]:
    """timm VisionTransformer.forward, by hand: returns (final-norm tokens, head logits on the class token)."""

    def norm(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, (WIDTH,), state[f"{name}.weight"], state[f"{name}.bias"], EPS)

    x = F.conv2d(pixels, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2)
    batch, tokens = x.shape[0], x.shape[1] + 1
    x = torch.cat([state["cls_token"].expand(batch, -1, -1), x], dim=1) + state["pos_embed"]
    head_dim = WIDTH // num_heads
    for index in range(DEPTH):
        block = f"blocks.{index}."
        qkv = F.linear(norm(x, block + "norm1"), state[block + "attn.qkv.weight"], state.get(block + "attn.qkv.bias"))
        q, k, v = qkv.reshape(batch, tokens, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4)
        attention = ((q @ k.transpose(-2, -1)) * head_dim**-0.5).softmax(dim=-1)
        mixed = (attention @ v).transpose(1, 2).reshape(batch, tokens, WIDTH)
        x = x + F.linear(mixed, state[block + "attn.proj.weight"], state[block + "attn.proj.bias"])
        hidden = F.gelu(
            F.linear(norm(x, block + "norm2"), state[block + "mlp.fc1.weight"], state[block + "mlp.fc1.bias"])
        )
        x = x + F.linear(hidden, state[block + "mlp.fc2.weight"], state[block + "mlp.fc2.bias"])
    x = norm(x, "norm")
    logits = F.linear(x[:, 0], state["head.weight"], state["head.bias"]) if "head.weight" in state else None
    return x, logits


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(3, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def timm_folder(tmp_path: Path) -> Path:
    """A folder laid out like a timm Hub repo: model.safetensors + timm's config.json."""
    save_file(make_timm_state_dict(), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(AUGREG_CONFIG))
    return tmp_path


def convert(state: dict[str, torch.Tensor], **kwargs) -> tuple:
    return convert_timm_vit_state_dict(state, num_attention_heads=HEADS, **kwargs)


# ---- the mapping is exact -------------------------------------------------------------------------------------------


def test_config_is_inferred_from_the_tensors() -> None:
    config, _ = convert(make_timm_state_dict())
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (WIDTH, DEPTH, HEADS)
    assert (config.patch_size, config.image_size, config.intermediate_size) == (PATCH, IMAGE, MLP)
    assert config.qkv_bias and config.layer_norm_eps == EPS and config.hidden_act == "gelu"


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_last_hidden_state_matches_timm_forward(pixels: torch.Tensor, qkv_bias: bool) -> None:
    state = make_timm_state_dict(qkv_bias=qkv_bias)
    config, hf_state = convert(state)
    model = ViTModel(config, add_pooling_layer=False).eval()
    model.load_state_dict(hf_state, strict=True)
    expected, _ = reference_timm_forward(state, pixels)
    with torch.no_grad():
        actual = model(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_classification_logits_match_timm_head_on_class_token(timm_folder: Path, pixels: torch.Tensor) -> None:
    model = load_timm_vit(timm_folder, model_class=ViTForImageClassification, num_attention_heads=HEADS)
    _, expected = reference_timm_forward(make_timm_state_dict(), pixels)
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
    assert model.config.num_labels == CLASSES
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_both_transformers_layouts_are_mapped() -> None:
    _, new = convert(make_timm_state_dict(), layout="transformers>=5.9")
    _, old = convert(make_timm_state_dict(), layout="transformers<5.9")
    assert "layers.1.attention.k_proj.weight" in new and "layers.0.mlp.fc2.bias" in new
    assert "encoder.layer.1.attention.attention.key.weight" in old and "encoder.layer.0.output.dense.bias" in old
    assert "layernorm.weight" in new and "layernorm.weight" in old
    assert len(new) == len(old)


def test_unknown_layout_is_refused() -> None:
    with pytest.raises(InvalidConfigError, match="transformers>=5.9"):
        convert(make_timm_state_dict(), layout="transformers 4")


def test_installed_layout_fills_every_model_key() -> None:
    config, hf_state = convert(make_timm_state_dict())
    assert set(hf_state) == set(ViTModel(config, add_pooling_layer=False).state_dict())


# ---- sources --------------------------------------------------------------------------------------------------------


def test_loads_from_a_local_timm_folder_with_its_config(timm_folder: Path, pixels: torch.Tensor) -> None:
    # heads come from the architecture name (tiny -> 3) unless given; here the width is not tiny's, so pass them
    model, processor = load_timm_vit_with_processor(timm_folder, num_attention_heads=HEADS)
    assert isinstance(model, ViTModel) and model.pooler is None and not model.training
    expected, _ = reference_timm_forward(make_timm_state_dict(), pixels)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixels).last_hidden_state, expected, atol=1e-5, rtol=1e-5)
    assert list(processor.image_mean) == [0.5] * 3 and list(processor.image_std) == [0.5] * 3
    assert processor.resample == PILImageResampling.BICUBIC


def test_loads_from_a_bare_safetensors_file(tmp_path: Path, pixels: torch.Tensor) -> None:
    path = tmp_path / "weights.safetensors"
    save_file(make_timm_state_dict(), str(path))
    model = load_timm_vit(path, num_attention_heads=HEADS)
    expected, _ = reference_timm_forward(make_timm_state_dict(), pixels)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixels).last_hidden_state, expected, atol=1e-5, rtol=1e-5)


def test_hub_id_downloads_weights_and_config(timm_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_download(repo_id: str, filename: str, **kwargs) -> str:
        calls.append((repo_id, filename, kwargs))
        return str(timm_folder / filename)

    monkeypatch.setattr(timm_vit, "hf_hub_download", fake_download)
    checkpoint = read_timm_checkpoint("hf-hub:timm/vit_tiny_patch4_16.augreg", revision="main")
    assert [call[:2] for call in calls] == [
        ("timm/vit_tiny_patch4_16.augreg", "model.safetensors"),
        ("timm/vit_tiny_patch4_16.augreg", "config.json"),
    ]
    assert calls[0][2] == {"revision": "main"}
    assert checkpoint.timm_config["architecture"] == "vit_tiny_patch4_16"
    assert set(checkpoint.state_dict) == set(make_timm_state_dict())


def test_paper_backbone_is_one_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ViT-S/16-shaped timm repo (6 heads from the name, 224 px, AugReg statistics), one block deep for speed."""
    generator = torch.Generator().manual_seed(0)
    state = {
        "cls_token": torch.randn(1, 1, 384, generator=generator),
        "pos_embed": torch.randn(1, 197, 384, generator=generator),
        "patch_embed.proj.weight": torch.randn(384, 3, 16, 16, generator=generator),
        "patch_embed.proj.bias": torch.zeros(384),
        "norm.weight": torch.ones(384),
        "norm.bias": torch.zeros(384),
    }
    for name, shape in {
        "norm1.weight": (384,), "norm1.bias": (384,), "attn.qkv.weight": (1152, 384), "attn.qkv.bias": (1152,),
        "attn.proj.weight": (384, 384), "attn.proj.bias": (384,), "norm2.weight": (384,), "norm2.bias": (384,),
        "mlp.fc1.weight": (1536, 384), "mlp.fc1.bias": (1536,), "mlp.fc2.weight": (384, 1536), "mlp.fc2.bias": (384,),
    }.items():  # fmt: skip
        state[f"blocks.0.{name}"] = torch.randn(*shape, generator=generator) * 0.02
    save_file(state, str(tmp_path / "model.safetensors"))
    config = {**AUGREG_CONFIG, "architecture": "vit_small_patch16_224", "num_classes": 0}
    config["pretrained_cfg"] = {**AUGREG_CONFIG["pretrained_cfg"], "input_size": [3, 224, 224], "num_classes": 0}
    (tmp_path / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(timm_vit, "hf_hub_download", lambda repo_id, filename, **kw: str(tmp_path / filename))

    model = load_timm_vit("timm/vit_small_patch16_224.augreg_in21k_ft_in1k")
    assert (model.config.hidden_size, model.config.num_attention_heads, model.config.patch_size) == (384, 6, 16)
    assert model.config.image_size == 224 and model.config.qkv_bias and model.config.layer_norm_eps == 1e-6


def test_converted_folder_reloads_with_plain_transformers(timm_folder: Path, tmp_path: Path, pixels) -> None:
    out = convert_timm_vit_checkpoint(timm_folder, tmp_path / "hf", num_attention_heads=HEADS)
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {p.name for p in out.iterdir()}
    model = ViTModel.from_pretrained(out, add_pooling_layer=False).eval()
    expected, _ = reference_timm_forward(make_timm_state_dict(), pixels)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixels).last_hidden_state, expected, atol=1e-5, rtol=1e-5)
    processor = AutoImageProcessor.from_pretrained(out)
    assert list(processor.image_mean) == [0.5] * 3 and processor.resample == PILImageResampling.BICUBIC
    assert json.loads((out / "config.json").read_text())["timm_source"] == str(timm_folder)


def test_cli_writes_an_hf_folder(timm_folder: Path, tmp_path: Path) -> None:
    assert (
        timm_vit_command.main(
            [str(timm_folder / "model.safetensors"), "--out", str(tmp_path / "cli"), "--num-heads", "2"]
        )
        == 0
    )
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["num_attention_heads"] == HEADS


# ---- image statistics -----------------------------------------------------------------------------------------------


def test_processor_reproduces_timm_eval_resize_and_crop() -> None:
    processor = timm_image_processor(AUGREG_CONFIG | {"pretrained_cfg": {"crop_pct": 0.9}}, 224)
    assert processor.size.shortest_edge == 248  # floor(224 / 0.9), as timm's eval transform
    assert (processor.crop_size.height, processor.crop_size.width) == (224, 224) and processor.do_center_crop


def test_processor_carries_imagenet_statistics_of_deit_like_checkpoints() -> None:
    cfg = {"pretrained_cfg": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "interpolation": "bilinear"}}
    processor = timm_image_processor(cfg, 224)
    assert list(processor.image_mean) == [0.485, 0.456, 0.406] and processor.resample == PILImageResampling.BILINEAR


def test_processor_refuses_an_unknown_crop_mode() -> None:
    with pytest.raises(InvalidConfigError, match="crop_mode"):
        timm_image_processor({"pretrained_cfg": {"crop_mode": "border"}}, 224)


# ---- refusals -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra_key", "named"),
    [
        ("fc_norm.weight", "global-average-pool"),
        ("reg_token", "register tokens"),
        ("dist_token", "distillation token"),
        ("blocks.0.ls1.gamma", "layer scale"),
        ("norm_pre.weight", "norm_pre"),
        ("blocks.1.attn.q_norm.weight", "query/key normalisation"),
    ],
)
def test_unsupported_timm_variants_are_refused_by_name(extra_key: str, named: str) -> None:
    state = make_timm_state_dict() | {extra_key: torch.ones(WIDTH)}
    with pytest.raises(UnsupportedModelError, match=named) as raised:
        convert(state)
    assert "Supported" in str(raised.value)


def test_checkpoint_without_class_token_is_refused() -> None:
    state = make_timm_state_dict()
    del state["cls_token"]
    with pytest.raises(UnsupportedModelError, match="no class token"):
        convert(state)


def test_average_pool_config_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="global_pool='avg'"):
        convert(make_timm_state_dict(), timm_config={"architecture": "vit_small_patch16_224", "global_pool": "avg"})


@pytest.mark.parametrize("architecture", ["swin_tiny_patch4_window7_224", "eva02_small_patch14_224", "resnet50"])
def test_non_vit_architectures_are_refused(architecture: str) -> None:
    with pytest.raises(UnsupportedModelError, match="supported"):
        convert(make_timm_state_dict(), timm_config={"architecture": architecture})


@pytest.mark.parametrize("suffix", [".bin", ".pth", ".pt"])
def test_pickle_files_are_never_read(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not read")
    with pytest.raises(IncompatibleCheckpointError, match="only .safetensors"):
        load_timm_vit(path)


def test_folder_with_only_a_pickle_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(IncompatibleCheckpointError, match="pytorch_model.bin"):
        load_timm_vit(tmp_path)


def test_missing_keys_are_listed() -> None:
    state = make_timm_state_dict()
    del state["blocks.1.mlp.fc2.bias"]
    with pytest.raises(IncompatibleCheckpointError, match=r"missing keys \[blocks\.1\.mlp\.fc2\.bias\]"):
        convert(state)


def test_unexpected_keys_are_listed() -> None:
    state = make_timm_state_dict() | {"blocks.0.attn.extra": torch.zeros(1)}
    with pytest.raises(IncompatibleCheckpointError, match=r"unexpected keys \[blocks\.0\.attn\.extra\]"):
        convert(state)


def test_wrong_shapes_are_listed() -> None:
    state = make_timm_state_dict()
    state["blocks.0.attn.proj.weight"] = torch.zeros(WIDTH, WIDTH + 1)
    with pytest.raises(IncompatibleCheckpointError, match=r"wrong shape.*blocks\.0\.attn\.proj\.weight"):
        convert(state)


def test_classification_needs_a_head() -> None:
    with pytest.raises(IncompatibleCheckpointError, match="no classification head"):
        convert(make_timm_state_dict(num_classes=0), model_class=ViTForImageClassification)


def test_unknown_width_needs_explicit_heads() -> None:
    with pytest.raises(InvalidConfigError, match="num_attention_heads"):
        convert_timm_vit_state_dict(make_timm_state_dict())


def test_architecture_name_must_match_the_width() -> None:
    with pytest.raises(IncompatibleCheckpointError, match="384 wide"):
        convert_timm_vit_state_dict(make_timm_state_dict(), timm_config={"architecture": "vit_small_patch16_224"})


def test_transformers_format_folder_is_pointed_to_from_pretrained(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    save_file({"embeddings.cls_token": torch.zeros(1, 1, WIDTH)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(UnsupportedModelError, match="from_pretrained"):
        load_timm_vit(tmp_path)


def test_unsupported_model_class_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="ViTModel or ViTForImageClassification"):
        convert(make_timm_state_dict(), model_class=torch.nn.Linear)


def test_nonexistent_source_is_neither_path_nor_hub_id() -> None:
    with pytest.raises(IncompatibleCheckpointError, match="neither"):
        load_timm_vit("/no/such/dir/weights")


def test_every_error_is_a_puma_error() -> None:
    assert issubclass(IncompatibleCheckpointError, PUMAError) and issubclass(UnsupportedModelError, PUMAError)


# ---- against timm itself, where it imports --------------------------------------------------------------------------


def test_matches_timm_own_model(pixels: torch.Tensor) -> None:
    timm_models = pytest.importorskip("timm.models.vision_transformer", reason="timm does not import here")
    state = make_timm_state_dict()
    reference = timm_models.VisionTransformer(
        img_size=IMAGE, patch_size=PATCH, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS, mlp_ratio=MLP / WIDTH,
        num_classes=CLASSES,
    ).eval()  # fmt: skip
    reference.load_state_dict(state, strict=True)
    config, hf_state = convert(state, model_class=ViTForImageClassification)
    model = ViTForImageClassification(config).eval()
    model.load_state_dict(hf_state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixels).logits, reference(pixels), atol=1e-5, rtol=1e-5)
        tokens = reference.forward_features(pixels)
        torch.testing.assert_close(model.vit(pixel_values=pixels).last_hidden_state, tokens, atol=1e-5, rtol=1e-5)
