#!/usr/bin/env bash
# The GPU half of the inference-forms measurement (docs/fusion.md, "On a GPU"): the frozen backbone, PUMA unfused and
# fused, LoRA unmerged and merged, ViT-S/16 shape, bf16 autocast, eager and under torch.compile, side by side in one
# process per run. Four runs, the most important first, each under a time limit so that the whole stays within
# 10 minutes on one H100 or H200:
#   1. batch 180 (the paper's global batch), compile mode default;
#   2. batch 45 (the paper's batch per GPU), compile mode default;
#   3. batch 180, mode reduce-overhead (CUDA graphs): if compiling was slower than eager because of CPU-side launch
#      and guard overhead, this closes the gap;
#   4. batch 180, mode max-autotune-no-cudagraphs (inductor searches matmul kernels): if the gap is kernel choice,
#      this closes it. Autotuning is slow to compile; this run is the one the time limit may cut.
# Usage: benchmarks/gpu_inference.sh [OUTPUT_FOLDER] [extra cost.py arguments, e.g. --device cpu --shape tiny]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/gpu_inference}
shift || true
mkdir -p "$out"
. benchmarks/gpu_machine.sh
record_machine "$out/machine.txt"
status=0
run() {  # run NAME LIMIT_S cost.py-arguments...
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit} s)" >&2
  timeout "$limit" python benchmarks/cost.py --device cuda --only inference --form_repeats 10 --compile_forms \
    --output "$out/$name.json" "$@" > "$out/$name.md" || { echo "$name: exit $?" >&2; status=1; }
}
run b180 150 --form_batch_sizes 180 "$@"
run b45 120 --form_batch_sizes 45 "$@"
run b180_reduce_overhead 150 --form_batch_sizes 180 --compile_mode reduce-overhead "$@"
run b180_max_autotune 170 --form_batch_sizes 180 --compile_mode max-autotune-no-cudagraphs "$@"
exit $status
