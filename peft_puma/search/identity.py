"""Which model made an index's embeddings, and the check that a query is embedded by the same one (docs/search.md,
"The manifest and the identity check").

An index records the adapter folder (absolute path), the SHA-256 of ``adapter_config.json`` and
``adapter_model.safetensors``, whether the adapter was switched off (zero-shot), the backbone (absolute path of a local
folder, or a Hub id) with the SHA-256 of its weights and configuration files, and the eval preprocessing. A query is
embedded with that backbone and preprocessing, and with the recorded adapter or one given by the user whose files hash
the same (a copy elsewhere is the same model); anything else would compare vectors of two different embedding spaces,
so it is refused with an :class:`~peft_puma.errors.IncompatibleCheckpointError`.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from ..errors import IncompatibleCheckpointError
from ..inference.loading import check_adapter_source
from ..runs.layout import ADAPTER_FILES
from ..runs.run_file import read_run_file
from ..tuners.puma.config import PUMAConfig

_CHUNK = 1 << 20
_BACKBONE_CONFIGS = ("config.json", "preprocessor_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def adapter_hashes(adapter: str) -> dict[str, str] | None:
    """SHA-256 of the adapter's two files in a local folder; ``None`` for a Hub id (nothing local to hash)."""
    if not os.path.isdir(adapter):
        return None
    return {name: file_sha256(os.path.join(adapter, name)) for name in ADAPTER_FILES}


def backbone_hashes(backbone: str) -> dict[str, str] | None:
    """SHA-256 of a local backbone folder's configuration and weight files; ``None`` for a Hub id."""
    if not os.path.isdir(backbone):
        return None
    names = sorted(
        name
        for name in os.listdir(backbone)
        if (name in _BACKBONE_CONFIGS or name.endswith(_WEIGHT_SUFFIXES))
        and os.path.isfile(os.path.join(backbone, name))
    )
    return {name: file_sha256(os.path.join(backbone, name)) for name in names}


def resolve_backbone(
    adapter: str | None, backbone: str | None, backbone_format: str | None
) -> tuple[str | None, str | None]:
    """The backbone an adapter was trained on (its run file, else its ``adapter_config.json``) unless one is given,
    as ``load_for_inference`` chooses it; a local folder becomes an absolute path, so the index works from any
    directory."""
    if adapter is not None and backbone is None:
        run = read_run_file(adapter) if os.path.isdir(adapter) else None
        if run is not None:
            backbone, backbone_format = run.backbone_source(adapter), backbone_format or run.backbone_format
        else:
            backbone = PUMAConfig.from_pretrained(adapter).base_model_name_or_path
    if backbone and os.path.isdir(backbone):
        backbone = os.path.abspath(backbone)
    return backbone, backbone_format


def model_identity(
    adapter: str | None, backbone: str | None, backbone_format: str | None, *, zero_shot: bool
) -> dict[str, Any]:
    """The identity an index records: adapter, its hashes, zero-shot or not, backbone and its hashes."""
    if adapter is not None:
        check_adapter_source(adapter)
    backbone, backbone_format = resolve_backbone(adapter, backbone, backbone_format)
    local = adapter is not None and os.path.isdir(adapter)
    return {
        "adapter": (os.path.abspath(adapter) if local else adapter),
        "adapter_files": adapter_hashes(adapter) if adapter is not None else None,
        "zero_shot": bool(zero_shot),
        "backbone": backbone,
        "backbone_format": backbone_format,
        "backbone_files": backbone_hashes(backbone) if backbone else None,
    }


def _changed(recorded: dict[str, str] | None, now: dict[str, str] | None) -> str:
    """Names of the files whose hash differs (or that appeared or vanished), for a message."""
    recorded, now = recorded or {}, now or {}
    names = sorted(name for name in set(recorded) | set(now) if recorded.get(name) != now.get(name))
    return ", ".join(names) or "its files"


def query_adapter(recorded: dict[str, Any], adapter: str | None) -> str | None:
    """The adapter to embed queries with: ``adapter`` (the user's ``--adapter``) if it is the recorded one, else the
    recorded one if it is unchanged; an :class:`IncompatibleCheckpointError` otherwise. The backbone is checked too."""
    recorded_adapter = recorded["adapter"]
    if adapter is not None:
        if recorded_adapter is None:
            raise IncompatibleCheckpointError(
                "This index was built zero-shot (the backbone alone, no adapter); query it without --adapter."
            )
        check_adapter_source(adapter)
        hashes = adapter_hashes(adapter)
        if hashes != recorded["adapter_files"] or (hashes is None and adapter != recorded_adapter):
            raise IncompatibleCheckpointError(
                f"--adapter {adapter} is not the adapter this index was built with ({recorded_adapter}; "
                f"{_changed(recorded['adapter_files'], hashes)} differ(s)): its embeddings are not comparable. Query "
                "without --adapter, or build an index with this adapter."
            )
        chosen = adapter
    elif recorded_adapter is not None:
        if recorded["adapter_files"] is not None:
            if not os.path.isdir(recorded_adapter):
                raise IncompatibleCheckpointError(
                    f"The adapter folder this index was built with, {recorded_adapter}, no longer exists; pass a copy "
                    "of it with --adapter."
                )
            check_adapter_source(recorded_adapter)
            hashes = adapter_hashes(recorded_adapter)
            if hashes != recorded["adapter_files"]:
                raise IncompatibleCheckpointError(
                    f"The adapter in {recorded_adapter} changed since this index was built "
                    f"({_changed(recorded['adapter_files'], hashes)} differ(s)): queries would not be comparable "
                    "with the index. Build the index again."
                )
        chosen = recorded_adapter
    else:
        chosen = None
    _check_backbone(recorded)
    return chosen


def _check_backbone(recorded: dict[str, Any]) -> None:
    backbone, hashes = recorded["backbone"], recorded["backbone_files"]
    if hashes is None:
        return  # a Hub id: nothing local to compare
    if not os.path.isdir(backbone):
        raise IncompatibleCheckpointError(
            f"The backbone folder this index was built with, {backbone}, no longer exists; build the index again."
        )
    now = backbone_hashes(backbone)
    if now != hashes:
        raise IncompatibleCheckpointError(
            f"The backbone in {backbone} changed since this index was built ({_changed(hashes, now)} differ(s)); "
            "build the index again."
        )
