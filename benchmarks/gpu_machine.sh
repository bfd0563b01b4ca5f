# Sourced by the GPU scripts: record_machine FILE writes the date, commit, GPU and library versions of this run.
record_machine() {
  {
    date -u +%FT%TZ
    git rev-parse --short HEAD 2>/dev/null || true
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python -c "import torch, transformers, peft, accelerate; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'transformers', transformers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)"
  } > "$1" 2>&1
}
