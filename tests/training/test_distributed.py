"""Two CPU processes through ``accelerate launch``: the loss sees the gathered global batch (local part
differentiable), evaluation embeds every row once, and a training run gives the single-process loss."""

from __future__ import annotations

import json
import os
import socket
import sys

import pytest

from peft_puma.training import load_config, train

from .conftest import run_module, write_config


# On a CPU-only machine `--cpu --num_processes 2` starts one process; `--multi_gpu` starts two, and the scripts'
# Accelerator(cpu=True) makes them a gloo group (docs/training.md, "Commands").
def _launch() -> list[str]:
    with socket.socket() as probe:  # a free port: other jobs on the machine may hold accelerate's default 29500
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    return command + [
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
    ]


def test_gather_and_sharded_embedding_on_two_processes(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "distributed_check.py")
    done = run_module([*_launch(), script, str(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        with open(tmp_path / f"rank{rank}.json") as handle:
            seen = json.load(handle)
        assert seen["world"] == 2
        assert seen["gathered"] == [[1.0, 1.0]] * 3 + [[2.0, 2.0]] * 3  # process 0's rows, then process 1's
        assert seen["local_grad"] == seen["expected_grad"]  # the gradient reached the local slice, unchanged
        assert seen["labels"] == [0, 1, 2, 10, 11, 12]
        assert seen["rows"] == [[float(r), float(r * r)] for r in range(7)]


@pytest.mark.slow
def test_two_process_training_sees_the_single_process_global_batch(tiny_values, tmp_path):
    """With the deterministic variant (static adapter, single prompt), step 1 of 2 x 4 images has exactly the loss of
    1 x 8 images: the same global batch, gathered."""
    puma = {key: value for key, value in tiny_values["puma"].items() if key != "num_prompts"}  # the preset's: 1
    values = {**tiny_values, "method": "single_prompt_static_adapter", "puma": puma, "max_steps": 2}
    values["log_every_steps"] = 1
    config_path = write_config(str(tmp_path / "config.yaml"), {**values, "per_device_batch_size": 4})
    two = str(tmp_path / "two")
    done = run_module([*_launch(), "-m", "peft_puma.train", "--config", config_path, "--output_dir", two])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 per process x 2 process(es) = 8" in done.stdout
    assert os.path.isfile(os.path.join(two, "results.json"))
    single = train(load_config(None, {**values, "output_dir": str(tmp_path / "one")}))
    with open(os.path.join(two, "train_log.jsonl")) as handle:
        logged = [json.loads(line) for line in handle]
    assert logged[0]["train/loss"] == pytest.approx(single.losses[0], rel=1e-5)
