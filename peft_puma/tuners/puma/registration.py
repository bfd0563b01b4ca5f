"""Making PUMA a PEFT method: a ``PeftType`` member and the entries of PEFT's method mappings.

PEFT has no plugin entry points and ``register_peft_method`` accepts only names that are already members of its closed
``PeftType`` enum. So we add the member ``PUMA`` to the enum first, the way ``enum`` itself adds members, and then
register through PEFT's public function. Registration is idempotent.

Saved configs carry ``"peft_type": "PUMA"``, the method's name, as every PEFT method saves its own (``"LORA"``): PEFT
reads the field only as the key of its method table (``PEFT_TYPE_TO_CONFIG_MAPPING``), and the Hub reads
``base_model_name_or_path`` and ``task_type`` from adapter_config.json, not this field; tools that do read it expect a
name. Without ``import peft_puma``, PEFT's lookup fails as ``KeyError: 'PUMA'``; the model card's loading code
imports peft_puma first, and docs/puma.md says what the error means. Adapters saved by earlier versions carry a
sentence there (:data:`LEGACY_SAVED_PEFT_TYPES`); those still load.

Registering also makes transformers' own adapter API refuse PUMA configs with advice (transformers_integration.py).
"""

from __future__ import annotations

from peft.utils.peft_types import PeftType, TaskType

# Earlier values of the saved peft_type (sentences telling a user to import peft_puma), still found in saved
# adapters; each resolves to the same classes.
LEGACY_SAVED_PEFT_TYPES: tuple[str, ...] = (
    "PUMA (an adapter made with the peft_puma library: install peft_puma from its source repository and run "
    "`import peft_puma` before loading it with peft.PeftModel.from_pretrained)",
    "PUMA (a peft_puma adapter: `pip install peft_puma` and `import peft_puma` before loading it)",
)


# Versions of PEFT whose registration and save/load hooks this module is written against and tested with.
SUPPORTED_PEFT_VERSIONS = ">=0.21,<0.22"


def _add_enum_member(enum_cls: type, name: str, value: str):
    """Add ``name = value`` to a ``str`` Enum after its creation, as ``enum`` does when it builds the class."""
    if name in enum_cls.__members__:
        return enum_cls[name]
    member = str.__new__(enum_cls, value)
    member._name_ = name
    member._value_ = value
    member.__objclass__ = enum_cls
    member.__init__(value)
    enum_cls._member_map_[name] = member
    enum_cls._value2member_map_[value] = member
    enum_cls._member_names_.append(name)
    type.__setattr__(enum_cls, name, member)
    return member


PEFT_TYPE = _add_enum_member(PeftType, "PUMA", "PUMA")
# The task type selects the PeftModel subclass that get_peft_model and PeftModel.from_pretrained build.
TASK_TYPE = _add_enum_member(TaskType, "IMAGE_EMBEDDING", "IMAGE_EMBEDDING")


def register() -> None:
    """Register PUMA with PEFT (idempotent): config, tuner, prefix, PeftModel class, the saved-name aliases, and the
    guard that makes transformers' ``add_adapter`` refuse PUMA configs with advice."""
    from peft.auto import MODEL_TYPE_TO_PEFT_MODEL_MAPPING
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import register_peft_method

    # Deferred: these modules import this one (PEFT_TYPE, SAVED_PEFT_TYPE) at their top.
    from .config import PUMAConfig
    from .model import PUMAModel
    from .peft_model import PeftModelForImageEmbedding
    from .transformers_integration import install_transformers_guard

    if PEFT_TYPE not in PEFT_TYPE_TO_CONFIG_MAPPING:
        register_peft_method(name="puma", config_cls=PUMAConfig, model_cls=PUMAModel, prefix=PUMAModel.prefix)
    MODEL_TYPE_TO_PEFT_MODEL_MAPPING.setdefault(TASK_TYPE, PeftModelForImageEmbedding)
    # The sentences earlier versions saved as peft_type resolve to the same classes.
    for alias in LEGACY_SAVED_PEFT_TYPES:
        PEFT_TYPE_TO_CONFIG_MAPPING.setdefault(alias, PUMAConfig)
        PEFT_TYPE_TO_TUNER_MAPPING.setdefault(alias, PUMAModel)
        PEFT_TYPE_TO_PREFIX_MAPPING.setdefault(alias, PUMAModel.prefix)
    install_transformers_guard()
