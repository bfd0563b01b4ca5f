"""The benchmarks' method names and the trainer method each one measures, shared by cost.py and accuracy.py."""

# Benchmark name -> method of peft_puma.training.methods.METHODS (None: the bare frozen backbone, zero-shot).
BENCHMARK_METHODS: dict[str, str | None] = {
    "frozen": None,
    "linear": "linear",
    "prompt": "single_prompt",
    "lora": "lora",
    "static_adapter": "static_adapter",
    "puma": "puma",
    "full_ft": "full_finetune",
}
