"""Tiny, fast stand-ins for a real run: a random 2-layer ViT on 16 px images and a 3-dataset unified DatasetDict
(train and test splits, and optionally a validation split like UML-mini's).

The images are learnable (each class has its own colour and stripe, plus noise), so a few steps of training move
the loss; the sizes keep every run to a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import os

import datasets
import numpy as np
import torch
import yaml
from PIL import Image
from transformers import ViTConfig, ViTImageProcessor, ViTModel

from peft_puma.data.schema import row_features

IMAGE = 16

# dataset -> (train classes, train images per class, test classes, test images per class, test roles)
LAYOUT = {
    "stripes": (4, 6, 3, 4, "both"),
    "colours": (4, 6, 3, 4, "both"),
    "shop": (3, 6, 3, 5, "shop"),
}
# dataset -> (validation classes, validation images per class); roles as in the test split
VALIDATION_LAYOUT = {"stripes": (2, 4), "colours": (2, 4), "shop": (2, 5)}


def make_backbone(directory: str, seed: int = 0) -> str:
    """A random ViT (hidden 32, 2 layers, 16 px, patch 4) with its image processor, saved as a transformers folder;
    ``seed`` draws its weights (another seed: a backbone of the same shape with other weights)."""
    torch.manual_seed(seed)
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=IMAGE,
        patch_size=4,
        qkv_bias=True,
        layer_norm_eps=1e-6,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(directory)
    size = {"height": IMAGE, "width": IMAGE}
    ViTImageProcessor(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(directory)
    return directory


def _image(label: int, rng: np.random.Generator) -> Image.Image:
    colour = np.array([(label * 67) % 256, (label * 131) % 256, (label * 29 + 90) % 256], dtype=np.float64)
    pixels = np.tile(colour, (IMAGE, IMAGE, 1)) + rng.normal(0, 25, (IMAGE, IMAGE, 3))
    stripe = label % IMAGE
    pixels[:, stripe, :] = 255 - colour
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_dataset(directory: str, seed: int = 0, validation: bool = False) -> str:
    """The unified DatasetDict (row schema of peft_puma.data.schema), written with save_to_disk; with ``validation``,
    also a validation split (:data:`VALIDATION_LAYOUT`), labelled after the training classes and before the test
    classes, as UML-mini's."""
    rng = np.random.default_rng(seed)
    splits = ("train", "validation", "test") if validation else ("train", "test")
    columns = {split: {"image": [], "label": [], "dataset": [], "role": []} for split in splits}
    label = 0
    for split in splits:
        for name, (train_classes, train_per, test_classes, test_per, roles) in LAYOUT.items():
            classes, per = {
                "train": (train_classes, train_per),
                "validation": VALIDATION_LAYOUT[name],
                "test": (test_classes, test_per),
            }[split]
            for _ in range(classes):
                for index in range(per):
                    role = "train" if split == "train" else roles
                    if role == "shop":
                        role = "query" if index < 2 else "gallery"
                    columns[split]["image"].append(_image(label, rng))
                    columns[split]["label"].append(label)
                    columns[split]["dataset"].append(name)
                    columns[split]["role"].append(role)
                label += 1
    features = row_features()
    dataset = datasets.DatasetDict({s: datasets.Dataset.from_dict(c, features=features) for s, c in columns.items()})
    dataset.save_to_disk(directory)
    return directory


def tiny_config(backbone: str, dataset: str, **overrides) -> dict:
    """Config keys of a run of a few seconds: small PUMA (r 8, M 4, L 2, 16-d embeddings), 8 steps per epoch."""
    values = {
        "backbone": backbone,
        "dataset_path": dataset,
        "puma": {"r": 8, "num_prompts": 4, "prompt_length": 2, "embedding_size": 16},
        "epochs": 2,
        "per_device_batch_size": 8,
        "save_every_steps": 4,
        "log_every_steps": 2,
        "eval_ks": [1, 2, 4],
        "eval_batch_size": 16,
        "report_to": [],
        "progress_bar": False,
    }
    values.update(overrides)
    return values


def write_config(path: str, values: dict) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(values, handle)
    return path


# domain -> (classes, images per class) of a user's collection as a folder tree (docs/collections.md)
COLLECTION = {"stripes": (10, 4), "colours": (10, 4), "shop": (8, 5)}


def make_collection_tree(root: str, layout: dict = COLLECTION, seed: int = 0) -> str:
    """``root/<domain>/<class>/<n>.png|.jpg``: each class's images are its own colour and stripe plus noise, as in
    :func:`make_dataset`, saved alternately as PNG and JPEG (quality 95)."""
    rng = np.random.default_rng(seed)
    label = 0
    for domain, (classes, per_class) in layout.items():
        for index in range(classes):
            folder = os.path.join(root, domain, f"{domain}_{index:02d}")
            os.makedirs(folder, exist_ok=True)
            for number in range(per_class):
                if number % 2:
                    _image(label, rng).save(os.path.join(folder, f"{number}.jpg"), quality=95)
                else:
                    _image(label, rng).save(os.path.join(folder, f"{number}.png"))
            label += 1
    return root


def tree_as_dataset(root: str, directory: str) -> str:
    """The images of a folder tree as a dataset of columns ``image`` (the files' bytes), ``label`` (the class folder's
    name) and ``domain``, in path order, without splits: written with ``save_to_disk``."""
    columns: dict[str, list] = {"image": [], "label": [], "domain": []}
    for domain in sorted(os.listdir(root)):
        for name in sorted(os.listdir(os.path.join(root, domain))):
            for file in sorted(os.listdir(os.path.join(root, domain, name))):
                with open(os.path.join(root, domain, name, file), "rb") as handle:
                    columns["image"].append({"bytes": handle.read(), "path": None})
                columns["label"].append(name)
                columns["domain"].append(domain)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.Value("string"), "domain": datasets.Value("string")}
    )
    datasets.Dataset.from_dict(columns, features=features).save_to_disk(directory)
    return directory
