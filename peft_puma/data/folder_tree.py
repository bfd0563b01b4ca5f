"""A user's folder of images, read as a collection: which layout it has, its image files, each file's domain and
class (docs/collections.md, "Sources").

Two layouts, told apart by how deep the images lie (every image at the same depth):

- ``photos/<class>/<image>``: class folders, one domain (named after the folder);
- ``collections/<domain>/<class>/<image>``: domain folders, several domains: the paper's unified setting (arXiv
  2309.08944, Sec. 3), scored per domain, unified and harmonic as UML-mini is (docs/evaluation.md).

Either may sit one level down in split folders (``train/``, ``validation/``, ``test/``: the layout
``datasets``' ``imagefolder`` reads), and then those splits are used as they are. Hidden files and folders (a
leading ``.``) are passed over; other files that are not images are ignored and counted. The tree is listed with
``os.scandir`` (no ``stat`` per file) into one list of relative paths, so 200,000 images list in seconds and a few tens
of MB. Nothing is ever written into the folder: it may be read-only.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import datasets

from ..errors import DatasetLayoutError
from .collections import Collection, is_main_process
from .images import (
    DEFAULT_IMAGE_CHECK,
    IMAGE_EXTENSIONS,
    BadImage,
    CheckMode,
    FolderCheck,
    find_bad_images,
    report_skipped,
    require_readable,
)
from .schema import TEST_SPLIT, TRAIN_SPLIT, VALIDATION_SPLIT

CLASS_FOLDERS = "class_folders"
DOMAIN_FOLDERS = "domain_folders"
LAYOUTS: dict[int, str] = {2: CLASS_FOLDERS, 3: DOMAIN_FOLDERS}  # depth of the images -> layout

# Split folder names as datasets' imagefolder reads them, to our split names.
SPLIT_FOLDERS: dict[str, str] = {
    "train": TRAIN_SPLIT,
    "training": TRAIN_SPLIT,
    "validation": VALIDATION_SPLIT,
    "valid": VALIDATION_SPLIT,
    "val": VALIDATION_SPLIT,
    "test": TEST_SPLIT,
    "testing": TEST_SPLIT,
}
ACCEPTED = "<folder>/<class>/<image> (one domain) or <folder>/<domain>/<class>/<image> (several domains)"


@dataclass(frozen=True)
class FolderTree:
    """The image files of a folder tree and what its layout says of each: ``files`` relative to ``root``, sorted."""

    root: str
    layout: str  # CLASS_FOLDERS or DOMAIN_FOLDERS
    has_splits: bool  # train/ validation/ test/ folders above the layout
    files: list[str]
    non_images: int  # files that are not images (by extension), ignored
    non_image_example: str | None

    def parts(self, path: str) -> tuple[str | None, str, str]:
        """``(split or None, domain, class)`` of the relative image path ``path``."""
        names = path.split(os.sep)
        split = SPLIT_FOLDERS[names.pop(0).lower()] if self.has_splits else None
        domain = names[0] if self.layout == DOMAIN_FOLDERS else self.name
        return split, domain, names[-2]

    @property
    def name(self) -> str:
        """The domain name of a class-folder tree: the folder's own name."""
        return os.path.basename(os.path.normpath(os.path.abspath(self.root)))


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def read_folder_tree(root: str) -> FolderTree:
    """List ``root`` and tell its layout; a layout that is none of the accepted ones is a ``DatasetLayoutError``
    saying what was found and what is accepted."""
    walk = _Walk(root)
    walk.run()
    if not walk.files:
        others = (
            f"; it holds {walk.non_images} other file(s), e.g. {walk.non_image_example!r}" if walk.non_images else ""
        )
        raise DatasetLayoutError(
            f"The folder {root!r} holds no image file ({', '.join(IMAGE_EXTENSIONS)}){others}. Accepted: {ACCEPTED}."
        )
    has_splits = _has_split_folders(walk.top_folders)
    below = 1 if has_splits else 0  # split folders add one level above the layout

    def depth_of(path: str) -> int:
        return path.count(os.sep) + 1 - below

    depths = Counter(depth_of(path) for path in walk.files)
    if len(depths) > 1:
        examples = {depth: next(p for p in walk.files if depth_of(p) == depth) for depth in depths}
        found = ", ".join(
            f"{count} at depth {depth} (e.g. {examples[depth]!r})" for depth, count in sorted(depths.items())
        )
        raise DatasetLayoutError(
            f"The images under {root!r} lie at different depths: {found}. Accepted: {ACCEPTED}, every image at the "
            "same depth."
        )
    (depth,) = depths
    if depth not in LAYOUTS:
        where = "directly in the folder" if depth == 1 else f"{depth - 1} folders deep (e.g. {walk.files[0]!r})"
        raise DatasetLayoutError(f"The images under {root!r} lie {where}. Accepted: {ACCEPTED}.")
    tree = FolderTree(root, LAYOUTS[depth], has_splits, walk.files, walk.non_images, walk.non_image_example)
    _refuse_empty_folders(tree, walk.folders)
    return tree


def _has_split_folders(top_folders: list[str]) -> bool:
    names = {SPLIT_FOLDERS.get(name.lower()) for name in top_folders}
    return bool(top_folders) and None not in names and bool(names & {TRAIN_SPLIT, TEST_SPLIT})


def _refuse_empty_folders(tree: FolderTree, folders: list[str]) -> None:
    """Every folder above the images must lead to some: an empty class (or domain) folder is a mistake to name."""
    depth = (2 if tree.layout == DOMAIN_FOLDERS else 1) + (1 if tree.has_splits else 0)  # the class folders' depth
    holding = {os.path.dirname(path) for path in tree.files}
    for level in range(1, depth + 1):
        holding |= {os.sep.join(path.split(os.sep)[:level]) for path in tree.files}
    for folder in folders:
        level = folder.count(os.sep) + 1
        if level <= depth and folder not in holding:
            what = "class" if level == depth else ("split" if tree.has_splits and level == 1 else "domain")
            raise DatasetLayoutError(
                f"The {what} folder {os.path.join(tree.root, folder)!r} holds no image file "
                f"({', '.join(IMAGE_EXTENSIONS)}): remove it, or add its images. Accepted: {ACCEPTED}."
            )


class _Walk:
    """One pass over the tree with ``os.scandir``: image paths, the folders seen, the files that are not images.

    Symbolic links to folders are followed (collections are often assembled from links), each real folder once.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.files: list[str] = []
        self.folders: list[str] = []
        self.top_folders: list[str] = []
        self.non_images = 0
        self.non_image_example: str | None = None

    def run(self) -> None:
        if not os.path.isdir(self.root):
            raise DatasetLayoutError(f"The folder {self.root!r} does not exist. Accepted: {ACCEPTED}.")
        seen: set[tuple[int, int]] = set()
        pending = [""]
        while pending:
            relative = pending.pop()
            for entry in self._entries(relative, seen):
                path = os.path.join(relative, entry.name) if relative else entry.name
                if entry.is_dir():
                    pending.append(path)
                    self.folders.append(path)
                    if not relative:
                        self.top_folders.append(entry.name)
                elif is_image_file(entry.name):
                    self.files.append(path)
                else:
                    self.non_images += 1
                    self.non_image_example = self.non_image_example or path
        self.files.sort()

    def _entries(self, relative: str, seen: set[tuple[int, int]]) -> list[os.DirEntry]:
        folder = os.path.join(self.root, relative)
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in seen:
                return []  # a link back to a folder already listed
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as entries:
                return [entry for entry in entries if not entry.name.startswith(".")]
        except OSError as error:
            raise DatasetLayoutError(
                f"Cannot list the folder {folder!r}: {error.strerror or error}. Make it readable, or leave it out."
            ) from None


def tree_collection(
    root: str, *, check: CheckMode = DEFAULT_IMAGE_CHECK, on_error: str = "stop", num_threads: int | None = None
) -> Collection:
    """The collection of the folder tree ``root``: each image file (by path, decoded later), its domain and class.

    Every file is checked first (``check``: ``"header"`` identifies the format and refuses a decompression bomb;
    ``"full"`` also decodes it, which finds truncated and corrupt files; ``"exists"``). An unreadable file stops
    with a one-line error naming it (``on_error="stop"``), or is left out and listed on stderr (``"skip"``).
    """
    tree = read_folder_tree(root)
    files = _readable(root, tree.files, check, on_error, num_threads)
    found = {"layout": tree.layout, "split_folders": tree.has_splits, "images": len(files)}
    found.update({"not_images_ignored": tree.non_images, "unreadable_skipped": len(tree.files) - len(files)})
    notes = []
    if tree.non_images:
        notes.append(
            f"{tree.non_images} file(s) under {root!r} are not images ({', '.join(IMAGE_EXTENSIONS)}) and were "
            f"ignored, e.g. {tree.non_image_example!r}"
        )
    parts = [tree.parts(path) for path in files]
    images = datasets.Dataset.from_dict(
        {"image": [os.path.abspath(os.path.join(root, path)) for path in files]},
        features=datasets.Features({"image": datasets.Image()}),
    )
    row_splits = [split for split, _, _ in parts] if tree.has_splits else None
    domains, classes = [domain for _, domain, _ in parts], [key for _, _, key in parts]
    return Collection(images, domains, classes, row_splits, notes, found)


def _readable(root: str, files: list[str], check: CheckMode, on_error: str, num_threads: int | None) -> list[str]:
    """The files (relative to ``root``) that pass ``check``; the others stop the load or are skipped and listed."""
    bad = find_bad_images([os.path.join(root, path) for path in files], check, num_threads)
    if not bad:
        return files
    cut = len(os.path.join(root, ""))
    unreadable = [BadImage(item.path[cut:], item.reason) for item in bad]
    named = {item.path for item in unreadable}
    checked = FolderCheck([path for path in files if path not in named], unreadable)
    good = require_readable(root, checked, on_error, skip_hint="--on_error skip", use="use")
    if is_main_process():
        report_skipped(root, checked)
    return good
