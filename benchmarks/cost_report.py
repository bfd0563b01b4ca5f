"""The cost benchmark's reports: the Markdown tables of docs/benchmarks.md, the figure, and the headline ratios."""

from __future__ import annotations

import os

from cost_analysis import versus_full_ft
from cost_models import INFERENCE_FORMS, METHODS
from cost_records import CostResult, InferenceFormsRow, MethodCost, ScalingRow

SCALED_COLOURS = {"frozen": "tab:blue", "puma": "tab:red", "full_ft": "tab:green"}


def headline(result: CostResult) -> dict[str, float | None]:
    """The comparisons docs/benchmarks.md and docs/fusion.md state their cost targets in (the targets themselves live
    there, as prose), for the parts the run measured."""
    lines: dict[str, float | None] = {}
    if result.ratios is not None and result.methods is not None and result.checkpointing_ratios is not None:
        puma = result.ratios["puma"]
        lines = {
            "PUMA inference time per image / frozen backbone": puma.infer_vs_frozen,
            "PUMA training step time / full fine-tuning": puma.train_step_vs_full_ft,
            "PUMA training peak memory / full fine-tuning": puma.train_peak_vs_full_ft,
            "the same, both with activation checkpointing": (
                result.checkpointing_ratios.both_checkpointed_train_peak_puma_vs_full_ft
            ),
            "PUMA adapter file (MB)": result.methods["puma"].adapter_mb,
        }
    for row in result.inference_forms or []:
        lines.update(
            {
                f"batch {row.batch_size}: fused PUMA inference / frozen backbone": row.infer_vs_frozen("puma_fused"),
                f"batch {row.batch_size}: the same in CPU time": row.infer_cpu_vs_frozen("puma_fused"),
                f"batch {row.batch_size}: PUMA FLOPs / frozen backbone (the floor)": row.flops_floor,
                f"batch {row.batch_size}: fused PUMA / the floor": row.fused_vs_floor,
            }
        )
    return lines


def summary(result: CostResult) -> str:
    """What the script prints after its tables: the headline ratios and the load the run was measured under."""
    lines = [f"{text}: {_fmt(value, 3)}" for text, value in headline(result).items()]
    lines.append(f"load average start {result.run['load_average_start']}, end {result.load_average_end}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- tables
def markdown_table(result: CostResult) -> str:
    """The side-by-side table of docs/benchmarks.md, the compiled-inference table and the inference forms' table of
    docs/fusion.md, each when measured."""
    lines = _methods_table(result) if result.methods is not None else []
    if result.compiled_inference:
        lines += ["", *_compiled_table(result)]
    if result.inference_forms:
        lines += ["", *_forms_table(result.inference_forms)]
    return "\n".join(lines).strip("\n")


def _methods_table(result: CostResult) -> list[str]:
    lines = [
        f"| method | trainable params | adapter MB | train step s (batch {result.settings.train_batch_size}) | "
        "step vs full FT | train peak MB | peak vs full FT | infer ms/image | infer vs frozen |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in METHODS:
        row, ratios = result.methods[name], result.ratios[name]
        infer = [_fmt(_ms(row.infer_s), 1), _fmt(ratios.infer_vs_frozen, 2)]
        lines.append(_row(name, row, ratios.train_step_vs_full_ft, ratios.train_peak_vs_full_ft, infer))
    full_ft = result.methods["full_ft"]
    for name, row in result.activation_checkpointing.items():
        lines.append(_row(name, row, *versus_full_ft(row, full_ft), ["(as without)", ""]))
    return lines


def _row(name: str, row: MethodCost, step_ratio: float | None, peak_ratio: float | None, infer: list[str]) -> str:
    cells = [
        f"{row.trainable_params:,}",
        f"{row.adapter_mb:.2f}",
        _fmt(row.train_step_s, 2),
        _fmt(step_ratio, 2),
        _fmt(row.train_peak_mb, 0),
        _fmt(peak_ratio, 2),
        *infer,
    ]
    return f"| {name} | " + " | ".join(cells) + " |"


def _compiled_table(result: CostResult) -> list[str]:
    compiled = result.compiled_inference or {}
    backend = next(iter(compiled.values())).backend
    lines = [
        f"| method | compile s | eager infer ms/image | compiled ({backend}) ms/image | speed-up | "
        "compiled vs frozen compiled |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in compiled.items():
        cells = [
            f"{entry.compile_s:.1f}",
            f"{entry.eager_infer_s * 1e3:.1f}",
            f"{entry.compiled_infer_s * 1e3:.1f}",
            f"{entry.compiled_speedup:.2f}",
            _fmt(entry.compiled_vs_frozen_compiled, 2),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _forms_table(rows: list[InferenceFormsRow]) -> list[str]:
    compiled = any(f.compiled_infer_s is not None or f.compile_error for row in rows for f in row.forms.values())
    header = (
        "| batch | form | ms/image | vs frozen | CPU time vs frozen | GFLOP/image | FLOPs vs frozen | "
        "max abs diff vs source |"
    )
    rule = "|---|---|---|---|---|---|---|---|"
    if compiled:
        header += " compiled ms/image | compiled vs frozen compiled | compile speed-up | compile s |"
        rule += "---|---|---|---|"
    lines = [header, rule]
    errors = []
    for row in rows:
        for name in INFERENCE_FORMS:
            form = row.forms[name]
            cells = [
                str(row.batch_size),
                name,
                _fmt(_ms(form.infer_s), 1),
                _fmt(row.infer_vs_frozen(name), 3),
                _fmt(row.infer_cpu_vs_frozen(name), 3),
                _fmt(form.flops_per_image / 1e9, 3),
                _fmt(row.flops_vs_frozen(name), 3),
                "-" if form.max_abs_difference is None else f"{form.max_abs_difference:.1e}",
            ]
            if compiled:
                cells += [
                    _fmt(_ms(form.compiled_infer_s), 1) if not form.compile_error else "did not compile",
                    _fmt(row.compiled_vs_frozen_compiled(name), 3),
                    _fmt(row.compiled_speedup(name), 2),
                    _fmt(form.compile_s, 1),
                ]
                if form.compile_error:
                    errors.append(f"- batch {row.batch_size}, {name}: {form.compile_error}")
            lines.append("| " + " | ".join(cells) + " |")
    if errors:
        lines += ["", "Forms that did not compile:", *errors]
    return lines


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


# ---------------------------------------------------------------------------------------------------- figure
def plot(result: CostResult, path: str) -> None:
    """Top: the ratios to the frozen forward and to full fine-tuning (parity dashed); bottom: the per-image cost
    against image size and batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    _plot_ratios(result, axes[0])
    _plot_scaling(result, axes[1])
    machine = result.run["machine"]
    figure.suptitle(
        f"Cost on a {result.settings.backbone} backbone, {result.settings.device} {result.settings.precision}, "
        f"{machine['torch_threads']} threads ({machine['cpu']}), load {result.run['load_average_start'][0]}-"
        f"{result.load_average_end[0]}, {result.run['date'][:10]}",
        fontsize=10,
    )
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_ratios(result: CostResult, axes) -> None:
    names, full_ft = list(METHODS), result.methods["full_ft"]
    panels = (
        ("inference time per image / frozen", names, lambda n: result.ratios[n].infer_vs_frozen, None),
        ("training step time / full FT", names[1:], lambda n: result.ratios[n].train_step_vs_full_ft, 0),
        ("training peak memory / full FT", names[1:], lambda n: result.ratios[n].train_peak_vs_full_ft, 1),
    )
    for axis, (title, shown, value_of, checkpointed) in zip(axes, panels):
        values = [value_of(n) or 0.0 for n in shown]
        colours = ["tab:red" if n == "puma" else "tab:blue" for n in shown]
        if checkpointed is not None:  # training: add the rows with activation checkpointing (grey), vs plain full FT
            for name, row in result.activation_checkpointing.items():
                shown, values = [*shown, name], [*values, versus_full_ft(row, full_ft)[checkpointed] or 0.0]
                colours = [*colours, "tab:gray"]
        bars = axis.bar(shown, values, color=colours)
        axis.bar_label(bars, fmt="%.2f", fontsize=8)
        axis.axhline(1.0, color="black", linestyle="--", linewidth=1, label="parity")
        axis.set_title(title)
        axis.tick_params(axis="x", rotation=35)
        axis.legend(loc="upper left", fontsize=8)


def _plot_scaling(result: CostResult, axes) -> None:
    scaling = result.scaling
    panels = (
        ("image size (px)", scaling.image_size if scaling else [], lambda r: r.image_size, "infer"),
        ("inference batch size", scaling.infer_batch_size if scaling else [], lambda r: r.infer_batch_size, "infer"),
        ("training batch size", scaling.train_batch_size if scaling else [], lambda r: r.train_batch_size, "train"),
    )
    for axis, (label, rows, x_of, phase) in zip(axes, panels):
        for name, colour in SCALED_COLOURS.items():
            points = [(x_of(row), value) for row in rows if (value := _per_image(row, phase).get(name)) is not None]
            if points:
                xs, ys = zip(*points)
                axis.plot(xs, [y * 1e3 for y in ys], marker="o", color=colour, label=name)
        axis.set_xlabel(label)
        axis.set_ylabel("ms per image" + (" (training step)" if phase == "train" else " (inference)"))
        axis.set_title(f"per-image cost vs {label}")
        if rows:
            axis.legend(fontsize=8)


def _per_image(row: ScalingRow, phase: str) -> dict[str, float]:
    return row.train_step_s_per_image if phase == "train" else row.infer_s
