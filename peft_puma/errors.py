"""Exception types of peft_puma: one per kind of user mistake.

Every error a user can cause derives from :class:`PUMAError` (itself a ``ValueError``), so callers can catch the whole
family at once or one kind precisely. Messages say what was wrong and what is accepted.
"""

from __future__ import annotations


class PUMAError(ValueError):
    """Base class of every user-facing error raised by peft_puma; a command exits with its ``exit_status``."""

    exit_status = 2


class InvalidConfigError(PUMAError):
    """A configuration field (PUMAConfig, a loss, a training config) has a value outside what is accepted."""


class UnsupportedModelError(PUMAError):
    """The model handed to PUMA is not a backbone PUMA knows how to adapt (or is used in an unsupported way)."""


class IncompatibleCheckpointError(PUMAError):
    """A saved adapter does not fit the model it is loaded into, or is not a safe, complete PUMA checkpoint."""


class InvalidInputError(PUMAError):
    """Data handed to a function (embeddings, labels, images, pixel values) has the wrong shape, type or content."""


class FusedModelError(PUMAError):
    """A fused inference model (``fuse_for_inference``) was asked for what only the trainable PUMA model does: training,
    saving an adapter."""


class DatasetLayoutError(PUMAError):
    """A dataset folder does not have the layout, files or contents its spec expects."""


class PackageInstallError(PUMAError):
    """A system package a command needs could not be installed (no ``apt-get``, not root, apt failed); the message
    names the command to run with privileges and how to do without it."""


class ForeignContentError(PUMAError):
    """An output path holds something peft_puma did not write: nothing there is deleted or overwritten."""


class FolderInUseError(PUMAError):
    """Another process is writing in the folder a command was asked to write in (one writer per folder)."""


class WriteFailedError(PUMAError):
    """A file could not be written (a full disk, a folder without write permission, a read-only file system); the
    message says what was kept intact."""


class InterruptedRunError(PUMAError):
    """The command was interrupted (Ctrl-C); the message says what was saved and how to continue."""

    exit_status = 130
