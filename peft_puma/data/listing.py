"""Listing a folder of images: one rule for every command that reads one (a folder tree given to ``train`` and
``evaluate``, ``embed --images``, ``search index --images`` and query folders), so that what was trained on is what is
indexed (docs/collections.md, "Sources").

The rule: every file under the folder, found with ``os.scandir`` (no ``stat`` per file); symbolic links to folders are
followed (collections are often assembled from links), a link back to a folder above it is not (a loop), so each path
is listed once; hidden files and folders (a leading ``.``) are passed over; image files are told by their extension,
the others are counted. An entry that cannot even be looked at (a link that points to itself) is listed as a file, and
the image check names it as unreadable like any other. A folder that cannot be listed is recorded, not fatal, so
that the reader can say it with everything else it found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class Listing:
    """What :func:`list_folder` found under ``root``: paths relative to it (``files`` sorted)."""

    root: str
    files: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)  # files that are not images, by extension
    unlisted: list[tuple[str, str]] = field(default_factory=list)  # (folder, why it could not be listed)


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def has_plain_name(path: str) -> bool:
    """Whether ``path`` is valid UTF-8: a name with other bytes (``os`` gives them as surrogates) cannot be stored in
    a dataset's Arrow table, so a folder tree names such a file rather than failing deep inside ``pyarrow``."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_path(path: str) -> str:
    """``path`` as it can be printed: the bytes of a non-UTF-8 name escaped (``\\xff``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def list_folder(root: str) -> Listing:
    """Every file under ``root`` by the rule of the module docstring; ``root`` itself must be a listable folder (the
    caller says what it expected there)."""
    listing = Listing(root)
    pending: list[tuple[str, frozenset[tuple[int, int]]]] = [("", frozenset())]
    while pending:
        relative, above = pending.pop()
        folder = os.path.join(root, relative)
        try:
            info = os.stat(folder)
            here = (info.st_dev, info.st_ino)
            if here in above:
                continue  # a link back to a folder above it
            with os.scandir(folder) as scanned:
                entries = [entry for entry in scanned if not entry.name.startswith(".")]
        except OSError as error:
            if not relative:
                raise
            listing.unlisted.append((relative, error.strerror or str(error)))
            continue
        for entry in entries:
            path = os.path.join(relative, entry.name) if relative else entry.name
            if _is_folder(entry):
                pending.append((path, above | {here}))
                listing.folders.append(path)
            elif is_image_file(entry.name):
                listing.files.append(path)
            else:
                listing.others.append(path)
    listing.files.sort()
    listing.folders.sort()
    return listing


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link to itself (ELOOP) or a name the system refuses: a file the image check names
        return False
