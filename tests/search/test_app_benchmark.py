"""A smoke run of the app measurement of ``benchmarks/search.py`` at a tiny size, so that it cannot silently rot.
Nothing here checks the 1 s target: that is measured at 100,000 images and reported in docs/search.md."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest

pytest.importorskip("gradio", reason="the search app needs the [app] extra: pip install -e '.[app]'")

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benchmarks")


def test_the_app_benchmark_times_every_query_through_the_served_page(tiny, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)  # its own imports (run_info)
    spec = importlib.util.spec_from_file_location("search_benchmark", os.path.join(BENCHMARKS, "search.py"))
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    output = tmp_path / "app.json"
    argv = ["--distributions", "--app_adapter", tiny["run"], "--app_dataset", tiny["dataset"], "--k", "3"]
    argv += ["--app_gallery", "300", "--app_images", "9", "--app_queries", "2", "--output", str(output)]
    assert benchmark.main(argv) == 0
    measured = json.loads(output.read_text())["app_query"]
    assert (measured["num_rows"], measured["distinct_images"], measured["k"]) == (300, 9, 3)
    assert measured["collections"] == 3 and len(measured["times_s"]) == 2
    assert all(math.isfinite(value) and value > 0 for value in measured["times_s"])
    assert measured["max_s"] == max(measured["times_s"]) and measured["target_s"] == 1.0
    assert measured["within_target"] == (measured["max_s"] <= 1.0)
