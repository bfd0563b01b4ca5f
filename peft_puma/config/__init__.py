"""Config keys as typed dataclass fields: their types, checks and roles (:mod:`.keys`), and reading them from a YAML
file and the command line (:mod:`.parsing`). The data keys (:class:`peft_puma.data.config.DataConfig`) and the
training keys (:class:`peft_puma.training.TrainingConfig`) are both read this way (docs/training.md, "Config keys")."""
