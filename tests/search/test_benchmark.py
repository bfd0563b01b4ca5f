"""A smoke run of ``benchmarks/search.py`` at 10k vectors, so that it cannot silently rot. Nothing here checks speed
or recall targets: those are measured at 1M and reported in docs/search.md."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import torch

from peft_puma.inference.embeddings_file import save_embeddings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_search_benchmark_reports_every_index_with_finite_numbers(tmp_path):
    embeddings = tmp_path / "embeddings.safetensors"
    save_embeddings(str(embeddings), torch.nn.functional.normalize(torch.randn(300, 16), dim=1))
    output = tmp_path / "search.json"
    command = [sys.executable, os.path.join(REPO, "benchmarks", "search.py"), "--num_vectors", "10000"]
    command += ["--num_queries", "50", "--distributions", "embedding_like", "--embeddings", str(embeddings)]
    command += ["--ef_search", "16", "64", "--nprobe", "4", "--repeats", "1", "--output", str(output)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["benchmark"] == "search" and report["faiss"] and report["settings"]["threads"] == 1
    assert list(report["results"]) == ["synthetic-embedding_like", "embeddings.safetensors"]
    clustered = report["results"]["synthetic-embedding_like"]
    assert (clustered["num_vectors"], clustered["dim"], clustered["num_queries"]) == (10000, 128, 50)
    assert report["results"]["embeddings.safetensors"]["leave_one_out"] is True
    for result in report["results"].values():
        (exact,) = result["flat"]["settings"]
        assert exact["recall"] == 1.0 and exact["speedup"] == 1.0
        assert result["exact_queries_per_s"] == exact["queries_per_s"] > 0
        assert [s["ef_search"] for s in result["hnsw"]["settings"]] == [16, 64, 128]  # the sweep and the default
        assert sum(s["default"] for s in result["ivf"]["settings"]) == 1
        for index_type in ("flat", "hnsw", "ivf"):
            entry = result[index_type]
            assert entry["build_s"] > 0 and math.isfinite(entry["memory_mb"]) and entry["peak_memory_mb"] >= 0
            for setting in entry["settings"]:
                assert 0 <= setting["recall"] <= 1 and setting["queries_per_s"] > 0 and setting["speedup"] > 0
    assert "| hnsw | ef_search 128 (default) |" in done.stdout
