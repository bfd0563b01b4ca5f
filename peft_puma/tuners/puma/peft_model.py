"""The PeftModel class PEFT builds for PUMA adapters (selected through the ``IMAGE_EMBEDDING`` task type)."""

from __future__ import annotations

import tempfile
from typing import Any

from peft import PeftModel


class PeftModelForImageEmbedding(PeftModel):
    """A ``PeftModel`` for image-embedding adapters; ``model(pixel_values=x).embeddings`` are the embeddings.

    It differs from ``PeftModel`` in one place: ``push_to_hub`` uploads exactly what ``save_pretrained`` writes.
    transformers' generic ``push_to_hub`` replaces README.md with the Hub's card after saving, which would drop the
    model card that names the base model and the method.
    """

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
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=commit_message,
                revision=revision,
                create_pr=create_pr,
            )
