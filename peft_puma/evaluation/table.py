"""A result of ``evaluate_retrieval`` as one row of the paper's Table 2: per-dataset columns, Unified, Harmonic; and
the results block the trainer and ``python -m peft_puma.evaluate`` print (:func:`results_markdown`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from peft_puma.errors import InvalidInputError


def table_row(
    result: Mapping[str, Any], metric: str = "recall@1", datasets: Sequence[str] | None = None
) -> dict[str, float]:
    """``{dataset: value, ..., "Unified": value, "Harmonic": value}`` in percent (the paper's unit, docs/spec.md
    section 7).

    ``datasets`` picks and orders the dataset columns (default: all, in the result's order).
    """
    per_dataset = result.get("per_dataset", {})
    names = list(per_dataset) if datasets is None else list(datasets)
    missing = [name for name in names if name not in per_dataset]
    if missing:
        raise InvalidInputError(f"datasets {missing} are not in the result; it has {list(per_dataset)}.")
    if metric not in result["unified"]:
        raise InvalidInputError(f"metric {metric!r} is not in the result; it has {list(result['unified'])}.")
    row = {name: 100.0 * per_dataset[name][metric] for name in names}
    row["Unified"] = 100.0 * result["unified"][metric]
    if "harmonic" in result:
        row["Harmonic"] = 100.0 * result["harmonic"][metric]
    return row


def format_table_row(
    result: Mapping[str, Any], metric: str = "recall@1", datasets: Sequence[str] | None = None, digits: int = 1
) -> str:
    """A two-line Markdown table (header and values) of :func:`table_row`."""
    header, _, values = _markdown_rows(table_row(result, metric, datasets), digits)
    return f"{header}\n{values}"


def results_markdown(result: Mapping[str, Any], title: str = "") -> str:
    """What the trainer and ``python -m peft_puma.evaluate`` print: Recall@1 per dataset, Unified and Harmonic (the
    paper's Table 2 row) as a Markdown table, then the unified MAP@R and R-Precision."""
    unified = result["unified"]
    lines = [title, ""] if title else []
    lines += [
        "Recall@1 (%):",
        "",
        *_markdown_rows(table_row(result, "recall@1")),
        "",
        f"Unified MAP@R {100 * unified['map@r']:.1f} %, R-Precision {100 * unified['r_precision']:.1f} % "
        f"({unified['num_queries']} queries, gallery of {unified['num_gallery']}).",
    ]
    return "\n".join(lines)


def _markdown_rows(row: Mapping[str, float], digits: int = 1) -> tuple[str, str, str]:
    """The header, separator and values lines of a one-row Markdown table."""
    header = "| " + " | ".join(row) + " |"
    separator = "|" + "---|" * len(row)
    values = "| " + " | ".join(f"{value:.{digits}f}" for value in row.values()) + " |"
    return header, separator, values
