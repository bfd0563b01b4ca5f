"""Config keys as typed dataclass fields: their types, checks, roles and other names (:mod:`.keys`), reading them
from a YAML file and the command line (:mod:`.parsing`), and what every command's command line shares (:mod:`.cli`).
The data keys (:class:`peft_puma.data.config.DataConfig`) and the training keys
(:class:`peft_puma.training.TrainingConfig`) are both read this way (docs/training.md, "Config keys")."""
