"""The PEFT workflow a user expects: save/load in a fresh process, adapter management, unload, push_to_hub."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings

import peft
import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import ViTModel

import peft_puma
from peft_puma.tuners.puma import PUMALayer

from .tiny_models import load_backbone, randomize_adapters

SMALL = dict(r=8, num_prompts=4, prompt_length=3, embedding_size=16)


@pytest.fixture
def trained(backbone_dir):
    model = get_peft_model(load_backbone(backbone_dir), peft_puma.PUMAConfig(**SMALL))
    randomize_adapters(model)
    return model.eval()


def test_saved_adapter_is_small_safetensors_with_canonical_keys(trained, tmp_path):
    trained.save_pretrained(tmp_path / "adapter")
    files = sorted(os.listdir(tmp_path / "adapter"))
    assert files == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    keys = set(load_file(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert all(key.startswith("puma.") and "default" not in key for key in keys)
    assert {"puma.layers.0.attention.down", "puma.layers.1.mlp.up", "puma.prompt_pool.prompts"} <= keys
    assert {"puma.prompt_pool.keys", "puma.prompt_pool.attention", "puma.head.projection.weight"} <= keys
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    assert sum(t.numel() for t in load_file(tmp_path / "adapter" / "adapter_model.safetensors").values()) == trainable


def test_saving_never_asks_the_hub_about_the_backbones_vocabulary(trained, tmp_path, monkeypatch):
    """PEFT's save_embedding_layers="auto" asks the Hub whether the base model's config exists, to compare vocabulary
    sizes: a network call on every save, and a warning offline. A ViT has no vocabulary and PUMA trains no embedding
    layer, so saving (a PUMA adapter, and the LoRA baseline's tensors) must not ask."""

    def no_hub(*args, **kwargs):
        raise AssertionError(f"save_pretrained queried the Hub: {args}")

    monkeypatch.setattr(peft.utils.save_and_load, "check_file_exists_on_hf_hub", no_hub)
    trained.peft_config["default"].base_model_name_or_path = "someone/a-vit-on-the-hub"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trained.save_pretrained(tmp_path / "adapter")
        trained.save_pretrained(tmp_path / "explicit", save_embedding_layers=False)
    assert os.path.isfile(tmp_path / "adapter" / "adapter_model.safetensors")


def test_reload_in_a_fresh_process_gives_identical_outputs(trained, backbone_dir, tmp_path, pixels):
    trained.save_pretrained(tmp_path / "adapter")
    torch.save(pixels, tmp_path / "pixels.pt")
    expected = trained(pixel_values=pixels).embeddings
    script = textwrap.dedent(
        f"""
        import torch, peft_puma
        from peft import PeftModel
        from transformers import ViTModel
        base = ViTModel.from_pretrained({str(backbone_dir)!r}, add_pooling_layer=False)
        model = PeftModel.from_pretrained(base, {str(tmp_path / "adapter")!r}).eval()
        pixels = torch.load({str(tmp_path / "pixels.pt")!r})
        torch.save(model(pixel_values=pixels).embeddings, {str(tmp_path / "out.pt")!r})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected, atol=0, rtol=0)


def test_reload_under_another_adapter_name(trained, backbone_dir, tmp_path, pixels):
    trained.save_pretrained(tmp_path / "adapter")
    again = PeftModel.from_pretrained(load_backbone(backbone_dir), tmp_path / "adapter", adapter_name="shop").eval()
    assert again.active_adapter == "shop"
    torch.testing.assert_close(again(pixel_values=pixels).embeddings, trained(pixel_values=pixels).embeddings)


def test_loaded_adapter_is_frozen_unless_trainable_is_asked(trained, backbone_dir, tmp_path):
    trained.save_pretrained(tmp_path / "adapter")
    frozen = PeftModel.from_pretrained(load_backbone(backbone_dir), tmp_path / "adapter")
    assert not any(p.requires_grad for p in frozen.parameters())
    trainable = PeftModel.from_pretrained(load_backbone(backbone_dir), tmp_path / "adapter", is_trainable=True)
    assert {n for n, p in trainable.named_parameters() if p.requires_grad} == {
        n for n, p in trained.named_parameters() if "puma_" in n
    }


def test_add_set_and_delete_adapters(trained, pixels):
    first = trained(pixel_values=pixels).embeddings
    trained.add_adapter("second", peft_puma.PUMAConfig(**{**SMALL, "embedding_size": 8}))
    assert trained(pixel_values=pixels).embeddings.shape[1] == 16  # still the active one
    trained.set_adapter("second")
    assert trained(pixel_values=pixels).embeddings.shape[1] == 8
    trainable = {n for n, p in trained.named_parameters() if p.requires_grad}
    assert trainable and all(".second" in n for n in trainable)
    trained.set_adapter("default")
    torch.testing.assert_close(trained(pixel_values=pixels).embeddings, first)
    trained.delete_adapter("second")
    assert not any(".second" in n for n, _ in trained.named_parameters())
    torch.testing.assert_close(trained(pixel_values=pixels).embeddings, first)


def test_an_added_adapter_without_prompts_leaves_the_pool_of_the_first(trained, pixels):
    trained.add_adapter("plain", peft_puma.PUMAConfig.from_preset("static_adapter", r=4, embedding_size=8))
    trained.set_adapter("plain")
    tokens = trained(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
    assert tokens.shape[1] == 1 + 16  # no prompt tokens for this adapter


def test_only_one_adapter_can_be_active(trained):
    trained.add_adapter("second", peft_puma.PUMAConfig(**SMALL))
    with pytest.raises(peft_puma.InvalidConfigError, match="one adapter at a time"):
        trained.base_model.set_adapter(["default", "second"])


def test_unload_returns_the_untouched_backbone(trained, backbone_dir, pixels):
    expected = load_backbone(backbone_dir)(pixel_values=pixels).last_hidden_state
    backbone = trained.unload()
    assert type(backbone) is ViTModel
    assert not any(isinstance(m, PUMALayer) for m in backbone.modules())
    assert not any("puma" in n for n, _ in backbone.named_parameters())
    assert not backbone._forward_hooks and not backbone._forward_pre_hooks
    assert all(not m._forward_hooks for m in backbone.modules())
    torch.testing.assert_close(backbone(pixel_values=pixels).last_hidden_state, expected)


def test_merge_and_unload_is_refused_with_an_explanation(trained):
    with pytest.raises(peft_puma.PUMAError, match="cannot be merged.*unload"):
        trained.merge_and_unload()


def test_push_to_hub_uploads_the_adapter_and_a_model_card(trained, monkeypatch, tmp_path):
    import huggingface_hub

    uploads = {}

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):  # what would reach the Hub
        uploads["repo_id"] = repo_id
        uploads["files"] = {
            name: open(os.path.join(folder_path, name), "rb").read() for name in os.listdir(folder_path)
        }
        return huggingface_hub.CommitInfo(
            commit_url=f"https://hf.co/{repo_id}/commit/0", commit_message="", commit_description="", oid="0"
        )

    def fake_create_repo(self, repo_id, **kwargs):
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fake_upload_folder)
    trained.peft_config["default"].base_model_name_or_path = "timm/vit_small_patch16_224.augreg_in21k_ft_in1k"
    assert type(trained).__name__ == "PeftModelForImageEmbedding"
    trained.push_to_hub("someone/puma-test", token="fake")
    files = uploads["files"]
    assert uploads["repo_id"] == "someone/puma-test"
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(files)
    card = files["README.md"].decode()
    assert "PUMA" in card and "2309.08944" in card and "import peft_puma" in card
    assert "timm/vit_small_patch16_224.augreg_in21k_ft_in1k" in card
    assert "puma" in card.split("---")[1]  # tag in the card metadata
    assert json.loads(files["adapter_config.json"])["r"] == 8


def read_card(folder):
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md")


def card_code(text: str) -> str:
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_saved_model_card_is_our_own_card_without_template_placeholders(trained, backbone_dir, tmp_path):
    trained.save_pretrained(tmp_path / "adapter")
    card = read_card(tmp_path / "adapter")
    assert "[More Information Needed]" not in str(card)
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "image-feature-extraction"
    assert card.data.base_model is None  # a local backbone is no Hub id: named in words, never by its path
    assert {"puma", "peft_puma", "transformers", "image-retrieval"} <= set(card.data.tags)
    assert str(backbone_dir) not in str(card) and str(tmp_path) not in str(card)
    text = card.text
    assert "# PUMA adapter\n" in text and f"a local folder, `{backbone_dir.name}`, not a Hub repository" in text
    assert "arXiv 2309.08944" in text and "install peft_puma from its source repository" in text
    assert "import peft_puma" in card_code(text) and "PeftModel.from_pretrained" in card_code(text)
    assert "r = 8, s = 0.1" in text and "conditional prompt pool, M = 4, L = 3" in text and "Linear(d, 16)" in text
    assert f"- PEFT {peft.__version__}" in text and f"- peft_puma {peft_puma.__version__}" in text


def test_model_card_code_loads_the_adapter_beside_its_local_backbone(trained, backbone_dir, tmp_path, pixels):
    trained.save_pretrained(tmp_path / "adapter")
    if backbone_dir.parent != tmp_path:
        shutil.copytree(backbone_dir, tmp_path / backbone_dir.name)
    code = card_code(read_card(tmp_path / "adapter").text)
    namespace = {"pixel_values": pixels}
    with contextlib.chdir(tmp_path):  # where the card says the folders are: the adapter and a copy of the backbone
        exec(code, namespace)  # the card's own snippet, verbatim, as a visitor would paste it
    torch.testing.assert_close(namespace["embeddings"], trained(pixel_values=pixels).embeddings)


def test_model_card_is_rewritten_not_repeated_and_keeps_extra_and_user_text(trained, tmp_path):
    from peft_puma.tuners.puma.model_card import update_model_card

    folder = tmp_path / "adapter"
    trained.save_pretrained(folder)
    update_model_card(str(folder), trained.peft_config["default"], extra="### Results\n\n| R@1 |\n|---|\n| 0.5 |")
    readme = folder / "README.md"
    readme.write_text(readme.read_text() + "\n## Notes from the author\n\nTrained on my photos.\n")
    card = readme.read_text()
    order = [card.index(part) for part in ("## Configuration", "## Details\n\n### Results", "## Framework versions")]
    assert order == sorted(order)
    trained.save_pretrained(folder)
    card = readme.read_text()
    assert card.count("# PUMA adapter") == 1 and card.count("## Framework versions") == 1
    assert "Trained on my photos." in card  # the user's text outside the card's markers stays


def test_model_card_of_an_older_save_loses_the_generic_template(trained, tmp_path):
    from huggingface_hub import ModelCard, ModelCardData

    folder = tmp_path / "adapter"
    folder.mkdir()
    old = ModelCard.from_template(ModelCardData(library_name="peft"))  # what PEFT's save_pretrained wrote
    (folder / "README.md").write_text(str(old) + "\n### Framework versions\n\n- PEFT 0.21.0\n")
    assert "[More Information Needed]" in (folder / "README.md").read_text()
    trained.save_pretrained(folder)
    card = (folder / "README.md").read_text()
    assert "[More Information Needed]" not in card and "# PUMA adapter" in card and "PEFT 0.21.0" not in card


def test_model_card_of_a_named_adapter_points_to_its_subfolder(trained, backbone_dir, tmp_path, pixels):
    trained.add_adapter("shop", peft_puma.PUMAConfig(**{**SMALL, "embedding_size": 8}))
    trained.set_adapter("shop")
    trained.save_pretrained(tmp_path / "out", selected_adapters=["shop"])
    for folder in (tmp_path / "out", tmp_path / "out" / "shop"):
        assert "[More Information Needed]" not in (folder / "README.md").read_text()
    code = card_code(read_card(tmp_path / "out").text)
    assert "subfolder='shop'" in code
    if backbone_dir.parent != tmp_path:
        shutil.copytree(backbone_dir, tmp_path / backbone_dir.name)
    namespace = {"pixel_values": pixels}
    with contextlib.chdir(tmp_path):
        exec(code, namespace)
    torch.testing.assert_close(namespace["embeddings"], trained(pixel_values=pixels).embeddings)


def test_building_saving_and_loading_print_no_gradient_checkpointing_warning(backbone_dir, tmp_path):
    """PEFT 0.21 reads transformers 5's deprecated `is_gradient_checkpointing`; peft_puma silences exactly that."""
    message = "is_gradient_checkpointing"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # undo pyproject's filter, which hides the warning from every other test
        load_backbone(backbone_dir).is_gradient_checkpointing  # noqa: B018 - the warning is real here
        if not [w for w in caught if message in str(w.message)]:
            pytest.skip("this transformers (before 5.23) does not deprecate is_gradient_checkpointing")
        caught.clear()
        model = get_peft_model(load_backbone(backbone_dir), peft_puma.PUMAConfig(**SMALL))
        model.add_adapter("second", peft_puma.PUMAConfig(**SMALL))
        model.save_pretrained(tmp_path / "adapter")
        PeftModel.from_pretrained(load_backbone(backbone_dir), tmp_path / "adapter")
        PeftModel.from_pretrained(load_backbone(backbone_dir), tmp_path / "adapter", is_trainable=True)
    assert not [w for w in caught if issubclass(w.category, FutureWarning) and message in str(w.message)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_backbone(backbone_dir).is_gradient_checkpointing  # noqa: B018 - the filter did not outlive the call
    assert [w for w in caught if message in str(w.message)]


def test_output_keeps_the_backbone_output_and_reads_through_to_it(pixels):
    from .tiny_models import make_family

    model = get_peft_model(make_family("vit_classifier"), peft_puma.PUMAConfig(**SMALL)).eval()
    out = model(pixel_values=pixels)
    assert list(out.keys()) == ["embeddings", "backbone_output"]
    assert out.logits is out.backbone_output.logits and out.logits.shape == (len(pixels), 5)
    with pytest.raises(AttributeError, match="last_hidden_state"):
        out.last_hidden_state  # noqa: B018 - a classifier output has none, and says so


def test_return_dict_false_gives_embeddings_first_in_a_tuple(trained, pixels):
    expected = trained(pixel_values=pixels)
    out = trained(pixel_values=pixels, return_dict=False)
    assert isinstance(out, tuple)
    torch.testing.assert_close(out[0], expected.embeddings)
    torch.testing.assert_close(out[1], expected.last_hidden_state)
