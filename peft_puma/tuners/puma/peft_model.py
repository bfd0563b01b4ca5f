"""The PeftModel class PEFT builds for PUMA adapters (selected through the ``IMAGE_EMBEDDING`` task type)."""

from __future__ import annotations

import os
import tempfile
import warnings
from typing import Any

from peft import PeftModel
from peft.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME

from ...file_modes import apply_umask
from .hub import prepare_for_upload
from .model_card import update_model_card

# PEFT 0.21's PeftModel.__init__ reads `model.is_gradient_checkpointing`, which transformers 5 deprecated in favour of
# `is_activation_checkpointing`; the warning concerns PEFT's code, not the user's, so it is silenced there, exactly.
_GRADIENT_CHECKPOINTING_WARNING = r"`is_gradient_checkpointing` is deprecated"


class PeftModelForImageEmbedding(PeftModel):
    """A ``PeftModel`` for image-embedding adapters; ``model(pixel_values=x).embeddings`` are the embeddings.

    It differs from ``PeftModel`` in three places: building it does not print PEFT's ``is_gradient_checkpointing``
    FutureWarning; ``save_pretrained`` writes PUMA's model card instead of PEFT's generic template; and
    ``push_to_hub`` uploads what ``save_pretrained`` writes, made fit to publish (transformers' generic
    ``push_to_hub`` replaces README.md with the Hub's card after saving, which would drop the model card; hub.py
    removes local paths and points the card's loading code at the repository).
    """

    def __init__(self, model, peft_config, *args: Any, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_GRADIENT_CHECKPOINTING_WARNING, category=FutureWarning)
            super().__init__(model, peft_config, *args, **kwargs)

    def create_or_update_model_card(self, output_dir: str) -> None:
        """PUMA's card (model_card.py) instead of PEFT's template, for the adapter saved in ``output_dir``: ``default``
        when there is one, else the active adapter, which ``save_pretrained`` puts in the subfolder named after it."""
        self._write_model_card(output_dir, "default" if "default" in self.peft_config else self.active_adapter)

    def save_pretrained(self, save_directory: str, *args: Any, **kwargs: Any) -> None:
        if len(args) < 3:  # save_embedding_layers is PeftModel.save_pretrained's third parameter after the folder
            # PEFT's "auto" asks the Hub whether the base model's config exists, to compare vocabulary sizes: a
            # network call on every save and a warning offline. A ViT has no vocabulary and PUMA trains no
            # embedding layer (the patch embedding stays frozen), so there is nothing to ask.
            kwargs.setdefault("save_embedding_layers", False)
        super().save_pretrained(save_directory, *args, **kwargs)
        # safetensors writes 0600 (file_modes.py says why): the adapters PEFT just wrote, at the top or in subfolders.
        for folder in (save_directory, *(os.path.join(save_directory, name) for name in self.peft_config)):
            if os.path.isfile(os.path.join(folder, SAFETENSORS_WEIGHTS_NAME)):
                apply_umask(os.path.join(folder, SAFETENSORS_WEIGHTS_NAME))
        if kwargs.get("is_main_process", True) and not os.path.isfile(os.path.join(save_directory, CONFIG_NAME)):
            # No adapter at the top (``default`` was not among the selected ones): the top card points to a subfolder.
            saved = [n for n in self.peft_config if os.path.isfile(os.path.join(save_directory, n, CONFIG_NAME))]
            if saved:
                self._write_model_card(
                    save_directory, self.active_adapter if self.active_adapter in saved else saved[0]
                )

    def _write_model_card(self, output_dir: str, adapter_name: str) -> None:
        base = self.get_base_model()
        tags = set(getattr(base, "model_tags", None) or []) | set(self._get_peft_specific_model_tags())
        subfolder = None if adapter_name == "default" else adapter_name
        update_model_card(output_dir, self.peft_config[adapter_name], tags=tags, subfolder=subfolder)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Upload PUMA adapter",
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        **save_kwargs: Any,
    ):
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, **save_kwargs)
            prepare_for_upload(folder, repo_id)
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=commit_message,
                revision=revision,
                create_pr=create_pr,
            )
