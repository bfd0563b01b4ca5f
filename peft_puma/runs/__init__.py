"""The run folder: its layout (:mod:`.layout`), the run file (:mod:`.run_file`), saving and rebuilding a trained model
(:mod:`.saving`), checkpoints (:mod:`.checkpoints`) and the rule that decides whether a saved run is the run one wants
(:mod:`.same_run`). Training writes run folders; inference, evaluation, search and the benchmarks read them, all through
this package (docs/training.md, "The run folder")."""
