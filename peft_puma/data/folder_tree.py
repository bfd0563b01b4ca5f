"""A user's folder of images, read as a collection: which layout it has, its image files, each file's domain and
class (docs/collections.md, "Sources").

Two layouts, told apart by how deep the images lie (every image at the same depth):

- ``photos/<class>/<image>``: class folders, one domain (named after the folder);
- ``collections/<domain>/<class>/<image>``: domain folders, several domains: the paper's unified setting (arXiv
  2309.08944, Sec. 3), scored per domain, unified and harmonic as UML-mini is (docs/evaluation.md).

Images in subfolders of a class folder belong to that class, as torchvision's ``ImageFolder`` reads them (the layout
is the depth most images lie at). Either layout may sit one level down in split folders (``train/``, ``validation/``,
``test/``: the layout ``datasets``' ``imagefolder`` reads), and then those splits are used as they are (split folders
that share classes are said: a metric-learning test split holds unseen classes). The folder is listed by the one rule
of :mod:`.listing` (links followed, each path once). What is left out or wrong (files that are not images, empty class
folders, unreadable files, names that are not UTF-8) is gathered and said at once (:mod:`.problems`). Nothing is ever
written into the folder: it may be read-only.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field, replace

import datasets

from ..errors import DatasetLayoutError, InvalidInputError
from .collections import Collection
from .images import DEFAULT_IMAGE_CHECK, BadImage, CheckMode, check_on_error, find_bad_images
from .listing import IMAGE_EXTENSIONS, has_plain_name, list_folder, shown_path
from .problems import Findings, examples
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
_BAD_NAME = "its name is not valid UTF-8 (it cannot be stored in a dataset): rename it"


@dataclass(frozen=True)
class FolderTree:
    """The image files of a folder tree and what its layout says of each: ``files`` relative to ``root``, sorted."""

    root: str
    layout: str  # CLASS_FOLDERS or DOMAIN_FOLDERS
    has_splits: bool  # train/ validation/ test/ folders above the layout
    files: list[str]
    non_images: int  # files that are not images (by extension), ignored
    non_image_example: str | None
    outside: list[str] = field(default_factory=list)  # images above the class folders: left out
    nested: list[str] = field(default_factory=list)  # images in subfolders of their class folder: in its class
    empty: list[str] = field(default_factory=list)  # class (or domain, split) folders without images: left out
    others: list[str] = field(default_factory=list)  # files that are not images
    unlisted: list[tuple[str, str]] = field(default_factory=list)  # folders that could not be listed

    def parts(self, path: str) -> tuple[str | None, str, str]:
        """``(split or None, domain, class)`` of the relative image path ``path`` (its class: the class folder it
        lies in, at any depth below it)."""
        names = path.split(os.sep)
        split = SPLIT_FOLDERS[names.pop(0).lower()] if self.has_splits else None
        if self.layout == DOMAIN_FOLDERS:
            return split, names[0], names[1]
        return split, self.name, names[0]

    def left_out(self) -> dict[str, list[str]]:
        """What the run records of the tree's conventions, by key (kept only where non-empty)."""
        return {
            "nested_images": self.nested,
            "outside_images_left_out": self.outside,
            "empty_folders_left_out": self.empty,
        }

    def note_findings(self, findings: Findings) -> None:
        """Add what the listing left out or read by convention to ``findings`` (one note each kind, with counts)."""
        where = repr(self.root)
        if self.others:
            findings.note(
                f"{len(self.others)} file(s) under {where} are not images ({', '.join(IMAGE_EXTENSIONS)}) and were "
                f"ignored, e.g. {shown_path(self.others[0])!r}"
            )
        if self.nested:
            findings.note(
                f"{len(self.nested)} image(s) lie in subfolders of their class folder "
                f"({examples([shown_path(path) for path in self.nested])}): each counts in the class of the class "
                "folder above it, as torchvision's ImageFolder reads them"
            )
        if self.outside:
            findings.note(
                f"{len(self.outside)} image(s) lie above the class folders, in no class "
                f"({examples([shown_path(path) for path in self.outside])}): left out"
            )
        if self.empty:
            named = examples([repr(os.path.join(self.root, shown_path(path))) for path in self.empty])
            class_level = (2 if self.layout == DOMAIN_FOLDERS else 1) + (1 if self.has_splits else 0)
            only_classes = all(path.count(os.sep) + 1 == class_level for path in self.empty)
            what = "class folder(s)" if only_classes else "class, domain or split folder(s)"
            findings.note(f"{len(self.empty)} {what} hold no image file ({named}): left out")
        for folder, reason in self.unlisted:
            findings.problem(
                f"Cannot list the folder {os.path.join(self.root, shown_path(folder))!r}: {reason}. Make it readable, "
                "or leave it out"
            )

    @property
    def name(self) -> str:
        """The domain name of a class-folder tree: the folder's own name."""
        return os.path.basename(os.path.normpath(os.path.abspath(self.root)))


def read_folder_tree(root: str) -> FolderTree:
    """List ``root`` (:func:`.listing.list_folder`) and tell its layout from the depth most of its images lie at; a
    tree with none of the accepted layouts is a ``DatasetLayoutError`` saying what was found and what is accepted.

    Images deeper than the layout belong to the class folder above them (torchvision's ``ImageFolder`` convention);
    images above the class folders, and class or domain folders without images, are left out. Both are said, not
    fatal (:meth:`FolderTree.notes`)."""
    if not os.path.isdir(root):
        raise DatasetLayoutError(f"The folder {root!r} does not exist. Accepted: {ACCEPTED}.")
    try:
        listing = list_folder(root)
    except OSError as error:
        raise DatasetLayoutError(
            f"Cannot list the folder {root!r}: {error.strerror or error}. Make it readable, or leave it out."
        ) from None
    if not listing.files:
        others = f"; it holds {len(listing.others)} other file(s), e.g. {listing.others[0]!r}" if listing.others else ""
        raise DatasetLayoutError(
            f"The folder {root!r} holds no image file ({', '.join(IMAGE_EXTENSIONS)}){others}. Accepted: {ACCEPTED}."
        )
    has_splits = _has_split_folders([folder for folder in listing.folders if os.sep not in folder])
    below = 1 if has_splits else 0  # split folders add one level above the layout
    depths = Counter(_depth(path, below) for path in listing.files)
    deep_enough = {depth: count for depth, count in depths.items() if depth > 1}
    if not deep_enough:
        raise DatasetLayoutError(f"The images under {root!r} lie directly in the folder. Accepted: {ACCEPTED}.")
    depth = max(deep_enough, key=lambda candidate: (deep_enough[candidate], -candidate))  # most images; ties: shallow
    if depth not in LAYOUTS:
        example = next(path for path in listing.files if _depth(path, below) == depth)
        raise DatasetLayoutError(
            f"The images under {root!r} lie {depth - 1} folders deep (e.g. {example!r}). Accepted: {ACCEPTED}."
        )
    files = [path for path in listing.files if _depth(path, below) >= depth]
    outside = [path for path in listing.files if _depth(path, below) < depth]
    nested = [path for path in files if _depth(path, below) > depth]
    levels = depth - 1 + below  # the class folders' level
    tree = FolderTree(root, LAYOUTS[depth], has_splits, files, len(listing.others), next(iter(listing.others), None))
    return replace(
        tree,
        outside=outside,
        nested=nested,
        empty=_empty_folders(files, listing.folders, levels),
        others=listing.others,
        unlisted=listing.unlisted,
    )


def names_in_tree(root: str, paths: list[str]) -> tuple[list[str | None], list[str | None]] | None:
    """``(collections, classes)`` of image ``paths`` under ``root`` as its layout names them (``None`` for a path
    outside the class folders), or ``None`` where ``root`` has no accepted layout: so that an index of a folder names
    each image's collection and class as training read them."""
    try:
        tree = read_folder_tree(root)
    except DatasetLayoutError:
        return None
    inside = set(tree.files)
    parts = [tree.parts(path) if path in inside else (None, None, None) for path in paths]
    return [domain for _, domain, _ in parts], [key for _, _, key in parts]


def _depth(path: str, below: int) -> int:
    return path.count(os.sep) + 1 - below


def _has_split_folders(top_folders: list[str]) -> bool:
    names = {SPLIT_FOLDERS.get(name.lower()) for name in top_folders}
    return bool(top_folders) and None not in names and bool(names & {TRAIN_SPLIT, TEST_SPLIT})


def _empty_folders(files: list[str], folders: list[str], levels: int) -> list[str]:
    """The folders down to the class folders' level that lead to no image: left out (said by the reader)."""
    holding: set[str] = set()
    for path in files:
        names = path.split(os.sep)
        holding |= {os.sep.join(names[:level]) for level in range(1, levels + 1)}
    empty = [folder for folder in folders if folder.count(os.sep) < levels and folder not in holding]
    return [folder for folder in empty if os.path.dirname(folder) not in empty]  # the topmost of each empty branch


def tree_collection(
    root: str,
    *,
    check: CheckMode = DEFAULT_IMAGE_CHECK,
    on_error: str = "stop",
    num_threads: int | None = None,
    unreadable: list[BadImage] | None = None,
) -> Collection:
    """The collection of the folder tree ``root``: each image file (by path, decoded later), its domain and class.

    Every file is checked first (``check``: ``"header"`` identifies the format and refuses a decompression bomb;
    ``"full"`` also decodes it, which finds truncated and corrupt files; ``"exists"``). What the reading finds wrong
    (unreadable files, a name that is not UTF-8, folders left out) is gathered in the collection's findings
    (:mod:`.problems`) and said at once after the split: unreadable files stop the run then (``on_error="stop"``), or
    are left out and listed on stderr (``"skip"``). ``unreadable``: the files another process's check of the same
    tree found unreadable, taken instead of checking every file again.
    """
    check_on_error(on_error)
    tree = read_folder_tree(root)
    findings = Findings(repr(root), on_error)
    tree.note_findings(findings)
    files = _readable(root, tree.files, check, num_threads, findings, unreadable)
    found = {"layout": tree.layout, "split_folders": tree.has_splits, "images": len(files)}
    found.update({"not_images_ignored": tree.non_images, "unreadable_skipped": len(tree.files) - len(files)})
    found.update({name: len(value) for name, value in tree.left_out().items() if value})
    parts = [tree.parts(path) for path in files]
    images = datasets.Dataset.from_dict(
        {"image": [os.path.abspath(os.path.join(root, path)) for path in files]},
        features=datasets.Features({"image": datasets.Image()}),
    )
    row_splits = [split for split, _, _ in parts] if tree.has_splits else None
    domains, classes = [domain for _, domain, _ in parts], [key for _, _, key in parts]
    if row_splits is not None:
        _note_shared_classes(findings, row_splits, domains, classes)
    return Collection(images, domains, classes, row_splits, findings, found)


def _readable(
    root: str,
    files: list[str],
    check: CheckMode,
    num_threads: int | None,
    findings: Findings,
    known: list[BadImage] | None = None,
) -> list[str]:
    """The files (relative to ``root``) that pass ``check`` and have a UTF-8 name; the others go to ``findings``.
    ``known``: the unreadable files as another process found them (nothing is checked again)."""
    named = [path for path in files if has_plain_name(path)]
    if known is not None:
        bad = list(known)
    else:
        badly_named = [path for path in files if not has_plain_name(path)]
        bad = [BadImage(os.path.join(root, shown_path(path)), _BAD_NAME) for path in badly_named]
        bad += find_bad_images([os.path.join(root, path) for path in named], check, num_threads)
    cut = len(os.path.join(root, ""))
    unreadable = {item.path[cut:] for item in bad}
    good = [path for path in named if path not in unreadable]
    if not good:
        listed = "; ".join(f"{item.path} ({item.reason})" for item in bad[:3])
        raise InvalidInputError(f"None of the {len(files)} image file(s) under {root!r} can be read: {listed}.")
    findings.unreadable = sorted(bad, key=lambda item: item.path)
    findings.readable = len(good)
    return good


def _note_shared_classes(findings: Findings, row_splits: list[str], domains: list[str], classes: list) -> None:
    """Split folders holding the same classes (a classification layout): scored, they would measure trained classes,
    where a metric-learning test split holds classes the model never saw (docs/collections.md, "Split folders")."""
    by_split: dict[str, set] = {}
    for split, domain, key in zip(row_splits, domains, classes):
        by_split.setdefault(split, set()).add((domain, key))
    trained = by_split.get(TRAIN_SPLIT, set())
    for split in (VALIDATION_SPLIT, TEST_SPLIT):
        shared = sorted(trained & by_split.get(split, set()), key=str)
        if shared:
            named = examples([f"{domain}/{key}" for domain, key in shared])
            findings.note(
                f"{len(shared)} of the {len(by_split[split])} {split} class(es) of the split folders also lie in the "
                f"train folder ({named}): {split} scores then measure classes the model trained on, where a "
                "metric-learning split holds unseen classes. Merge the split folders into one to have the classes "
                "split by class (docs/collections.md)"
            )
