#!/usr/bin/env bash
# The GPU measurement of the training step (docs/cost.md, "GPU"): every method's step (the trainer's own TrainingStep)
# at the paper's batches, 180 (global) and 45 (per GPU), bf16 autocast, ViT-S/16 shape, eager and compiled as the
# trainer's torch_compile does; PUMA's step split into its parts (torch.profiler, eager, batch 180); then the inference
# forms of benchmarks/gpu_inference.sh at both batches. Each run is limited so that the whole stays within 10 minutes on
# one H100 or H200, the most important first:
#   1. eager, batch 180, with the breakdown;    2. eager, batch 45;
#   3. compiled, batch 180;                      4. compiled, batch 45;
#   5. the inference forms, eager and compiled, at 180 and 45 (gpu_inference.sh's first two runs).
# Usage: benchmarks/gpu_training.sh [OUTPUT_FOLDER] [extra cost.py arguments, e.g. --device cpu --shape tiny]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/gpu_training}
shift || true
mkdir -p "$out"
. benchmarks/gpu_machine.sh
record_machine "$out/machine.txt"
status=0
# Training only: no scaling, no inference forms in these runs (the forms come last, in their own runs).
training=(--device cuda --repeats 7 --warmup 2 --scale_image_sizes --scale_infer_batch_sizes
  --scale_train_batch_sizes --form_batch_sizes)
run() {  # run NAME LIMIT_S cost.py-arguments...
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit} s)" >&2
  timeout "$limit" python benchmarks/cost.py --output "$out/$name.json" "$@" > "$out/$name.md" \
    || { echo "$name: exit $?" >&2; status=1; }
}
run train_b180 100 "${training[@]}" --train_batch_size 180 --infer_batch_size 180 --breakdown puma static_adapter \
  full_ft "$@"
run train_b45 70 "${training[@]}" --train_batch_size 45 --infer_batch_size 45 "$@"
run train_b180_compiled 150 "${training[@]}" --train_batch_size 180 --infer_batch_size 180 --torch_compile \
  --no_memory "$@"
run train_b45_compiled 120 "${training[@]}" --train_batch_size 45 --infer_batch_size 45 --torch_compile --no_memory "$@"
run forms_b180 80 --device cuda --only inference --form_repeats 10 --compile_forms --form_batch_sizes 180 "$@"
run forms_b45 60 --device cuda --only inference --form_repeats 10 --compile_forms --form_batch_sizes 45 "$@"
exit $status
