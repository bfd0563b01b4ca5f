"""Tiny fake copies of the eight datasets' ORIGINAL released layouts, for the data-layer tests.

Each writer builds the folder structure and list files the real download ships, with the real number of classes and a
few 8x8 images per class, so split class counts can be checked against docs/spec.md section 7. Images are written once
(one encoded JPEG per colour) and copied, which keeps the large fakes (SOP: 22,634 classes) fast.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

_JPEGS: dict[int, bytes] = {}


def jpeg_bytes(shade: int) -> bytes:
    if shade not in _JPEGS:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (shade % 256, (shade * 7) % 256, (shade * 13) % 256)).save(buffer, format="JPEG")
        _JPEGS[shade] = buffer.getvalue()
    return _JPEGS[shade]


def write_image(path: Path, shade: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(shade % 16))


def link_image(path: Path, templates: Path, shade: int = 0) -> None:
    """A hard link to one of 16 template JPEGs: 4x faster than writing for the 45k-file fakes.

    Writing into a linked file would change every image sharing its template: tests that damage images use the
    fakes built with :func:`write_image`.
    """
    template = templates / f"{shade % 16}.jpg"
    if not template.exists():
        write_image(template, shade % 16)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.link(template, path)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def make_cub(root: Path, num_classes: int = 200, per_class: int = 2) -> Path:
    root = root / "CUB_200_2011"
    classes, images, labels = [], [], []
    image_id = 0
    for class_id in range(1, num_classes + 1):
        folder = f"{class_id:03d}.Bird_{class_id}"
        classes.append(f"{class_id} {folder}")
        for k in range(per_class):
            image_id += 1
            name = f"{folder}/Bird_{class_id}_{k:04d}.jpg"
            write_image(root / "images" / name, image_id)
            images.append(f"{image_id} {name}")
            labels.append(f"{image_id} {class_id}")
    write_lines(root / "classes.txt", classes)
    write_lines(root / "images.txt", images)
    write_lines(root / "image_class_labels.txt", labels)
    return root.parent


def make_nabirds(root: Path, num_leaves: int = 555, per_class: int = 2) -> Path:
    root = root / "nabirds"
    # Inner taxonomy nodes (no images) take ids 0..9, leaves follow with gaps, as in the real classes.txt.
    inner = list(range(10))
    leaves = [100 + 2 * i for i in range(num_leaves)]
    classes = [f"{c} Inner node {c}" for c in inner] + [f"{c} Leaf bird {c} (Adult)" for c in leaves]
    hierarchy = [f"{c} 0" for c in inner[1:]] + [f"{c} {1 + i % 9}" for i, c in enumerate(leaves)]
    images, labels = [], []
    for leaf in leaves:
        for k in range(per_class):
            uuid = f"{leaf:08x}-0000-4000-8000-{k:012x}"
            name = f"{leaf:04d}/{uuid.replace('-', '')}.jpg"
            write_image(root / "images" / name, leaf + k)
            images.append(f"{uuid} {name}")
            labels.append(f"{uuid} {leaf}")
    write_lines(root / "classes.txt", classes)
    write_lines(root / "hierarchy.txt", hierarchy)
    write_lines(root / "images.txt", images)
    write_lines(root / "image_class_labels.txt", labels)
    return root.parent


def _save_mat(path: Path, **variables: object) -> None:
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, variables)


def _struct_array(records: list[dict[str, object]]) -> np.ndarray:
    """A 1 x N MATLAB struct array, as the Stanford Cars annotation files hold."""
    fields = list(records[0])
    array = np.zeros((1, len(records)), dtype=[(f, object) for f in fields])
    for i, record in enumerate(records):
        for f in fields:
            array[0, i][f] = record[f]
    return array


def _class_names(count: int) -> np.ndarray:
    names = np.empty((1, count), dtype=object)
    for i in range(count):
        names[0, i] = f"Make{i + 1} Model {2000 + i % 13}"
    return names


def make_cars_devkit(root: Path, num_classes: int = 196, per_class: int = 2, test_in_devkit: bool = False) -> Path:
    train, test = [], []
    for class_id in range(1, num_classes + 1):
        for k in range(per_class):
            side, folder = (train, "cars_train") if k % 2 == 0 else (test, "cars_test")
            fname = f"{len(side) + 1:05d}.jpg"
            write_image(root / folder / fname, class_id)
            side.append({"bbox_x1": 1, "bbox_y1": 1, "bbox_x2": 7, "bbox_y2": 7, "class": class_id, "fname": fname})
    _save_mat(root / "devkit" / "cars_meta.mat", class_names=_class_names(num_classes))
    _save_mat(root / "devkit" / "cars_train_annos.mat", annotations=_struct_array(train))
    test_file = ("devkit/" if test_in_devkit else "") + "cars_test_annos_withlabels.mat"
    _save_mat(root / test_file, annotations=_struct_array(test))
    return root


def make_cars_combined(root: Path, num_classes: int = 196, per_class: int = 2) -> Path:
    records = []
    for class_id in range(1, num_classes + 1):
        for k in range(per_class):
            path = f"car_ims/{len(records) + 1:06d}.jpg"
            write_image(root / path, class_id)
            records.append({"relative_im_path": path, "class": class_id, "test": k % 2})
    _save_mat(root / "cars_annos.mat", annotations=_struct_array(records), class_names=_class_names(num_classes))
    return root


def make_sop(root: Path, train_classes: int = 11318, test_classes: int = 11316, per_class: int = 2) -> Path:
    templates, root = root / "templates", root / "Stanford_Online_Products"
    image_id = 0
    for file_name, first, count in (
        ("Ebay_train.txt", 1, train_classes),
        ("Ebay_test.txt", train_classes + 1, test_classes),
    ):
        lines = ["image_id class_id super_class_id path"]
        for class_id in range(first, first + count):
            super_id = 1 + class_id % 12
            for k in range(per_class):
                image_id += 1
                path = f"cat{super_id}_final/{class_id}_{k}.JPG"
                link_image(root / path, templates, class_id)
                lines.append(f"{image_id} {class_id} {super_id} {path}")
        write_lines(root / file_name, lines)
    return root.parent


def make_inshop(root: Path, train_items: int = 3997, test_items: int = 3985, nested: bool = False) -> Path:
    """Training items get two images each; test items one query and one gallery image."""
    list_dir, image_base = (root / "Eval", root / "Img") if nested else (root, root)
    templates = root.parent / f"{root.name}-templates"
    rows = []
    for item in range(1, train_items + test_items + 1):
        item_id = f"id_{item:08d}"
        statuses = ["train", "train"] if item <= train_items else ["query", "gallery"]
        for k, status in enumerate(statuses):
            name = f"img/WOMEN/Dresses/{item_id}/{k + 1:02d}_{k + 1}_front.jpg"
            link_image(image_base / name, templates, item + k)
            rows.append(f"{name} {item_id} {status}")
    write_lines(list_dir / "list_eval_partition.txt", [str(len(rows)), "image_name item_id evaluation_status", *rows])
    return root


def make_dogs(root: Path, num_classes: int = 120, per_class: int = 2) -> Path:
    for c in range(num_classes):
        wnid = f"n{2085620 + c * 17:08d}"
        for k in range(per_class):
            write_image(root / "Images" / f"{wnid}-Breed_{c}" / f"{wnid}_{k}.jpg", c + k)
    return root


def make_flowers(root: Path, num_classes: int = 102, per_class: int = 2) -> Path:
    labels = np.array([[1 + (i % num_classes) for i in range(num_classes * per_class)]], dtype=np.uint8)
    for index, label in enumerate(labels[0], start=1):
        write_image(root / "jpg" / f"image_{index:05d}.jpg", int(label))
    _save_mat(root / "imagelabels.mat", labels=labels)
    _save_mat(root / "setid.mat", trnid=np.arange(1, 3), valid=np.arange(3, 5), tstid=np.arange(5, labels.size + 1))
    return root


def aircraft_variants(count: int = 100) -> list[str]:
    """Names in the real file's style (spaces, slashes, dashes), listed in an order that is not the sorted one."""
    base = ["Boeing 7{:02d}-{}00", "A3{:02d}-{}", "Cessna 1{:02d} {}", "F/A-1{:02d}{}", "DHC-{:02d} {}"]
    return [base[i % 5].format(i, i % 3) for i in range(count)][::-1]


def make_aircraft(root: Path, variants: list[str] | None = None, per_class: int = 3) -> Path:
    data = root / "fgvc-aircraft-2013b" / "data"
    variants = aircraft_variants() if variants is None else variants
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    image_id = 1000000
    for v, variant in enumerate(variants):
        for k in range(per_class):
            image_id += 1
            write_image(data / "images" / f"{image_id:07d}.jpg", v + k)
            lists[("train", "val", "test")[k % 3]].append(f"{image_id:07d} {variant}")
    write_lines(data / "variants.txt", variants)
    for split, lines in lists.items():
        write_lines(data / f"images_variant_{split}.txt", lines)
    return root


MAKERS: dict[str, Callable[[Path], Path]] = {
    "cub": make_cub,
    "cars": make_cars_devkit,
    "sop": make_sop,
    "inshop": make_inshop,
    "nabirds": make_nabirds,
    "dogs": make_dogs,
    "flowers": make_flowers,
    "aircraft": make_aircraft,
}


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target
