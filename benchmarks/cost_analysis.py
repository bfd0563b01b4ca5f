"""What the cost measurements say side by side: ratios to the frozen forward and to full fine-tuning, the price and
the saving of activation checkpointing, and where PUMA's extra cost comes from. Pure arithmetic on the records."""

from __future__ import annotations

from cost_records import CheckpointingRatios, MethodCost, PhaseOverhead, Ratios, ratio


def ratios(methods: dict[str, MethodCost]) -> dict[str, Ratios]:
    """Each method against the frozen forward (inference) and against full fine-tuning (everything)."""
    frozen, full_ft = methods["frozen"], methods["full_ft"]
    return {
        name: Ratios(
            infer_vs_frozen=ratio(row.infer_s, frozen.infer_s),
            infer_vs_full_ft=ratio(row.infer_s, full_ft.infer_s),
            train_step_vs_full_ft=ratio(row.train_step_s, full_ft.train_step_s),
            train_peak_vs_full_ft=ratio(row.train_peak_mb, full_ft.train_peak_mb),
            trainable_vs_full_ft=ratio(row.trainable_params, full_ft.trainable_params),
            adapter_mb_vs_full_ft=ratio(row.adapter_mb, full_ft.adapter_mb),
        )
        for name, row in methods.items()
    }


def checkpointing_ratios(rows: dict[str, MethodCost]) -> CheckpointingRatios:
    """Training time and peak memory with activation checkpointing, against PUMA and full fine-tuning with and
    without it."""
    puma, full_ft = rows["puma"], rows["full_ft"]
    puma_ckpt, full_ft_ckpt = rows["puma_checkpointed"], rows["full_ft_checkpointed"]
    return CheckpointingRatios(
        puma_checkpointed_train_step_vs_puma=ratio(puma_ckpt.train_step_s, puma.train_step_s),
        puma_checkpointed_train_peak_vs_puma=ratio(puma_ckpt.train_peak_mb, puma.train_peak_mb),
        puma_checkpointed_train_step_vs_full_ft=ratio(puma_ckpt.train_step_s, full_ft.train_step_s),
        puma_checkpointed_train_peak_vs_full_ft=ratio(puma_ckpt.train_peak_mb, full_ft.train_peak_mb),
        both_checkpointed_train_step_puma_vs_full_ft=ratio(puma_ckpt.train_step_s, full_ft_ckpt.train_step_s),
        both_checkpointed_train_peak_puma_vs_full_ft=ratio(puma_ckpt.train_peak_mb, full_ft_ckpt.train_peak_mb),
    )


def versus_full_ft(row: MethodCost, full_ft: MethodCost) -> tuple[float | None, float | None]:
    """A training row's step time and peak memory as fractions of plain full fine-tuning's."""
    return ratio(row.train_step_s, full_ft.train_step_s), ratio(row.train_peak_mb, full_ft.train_peak_mb)


def puma_overhead(rows: dict[str, MethodCost]) -> dict[str, PhaseOverhead]:
    """Where PUMA's extra cost comes from, from the measured PUMA-without-a-part rows.

    Inference: extra time over the frozen forward of PUMA, of prompts only (no adapters) and of adapters only (no
    prompts); training: the same over the linear head (frozen forward + head training). The two shares need not add
    up to 1: with both parts the adapters also process the prompt tokens, and timings carry noise.
    """
    phases = {"inference": ("frozen", "infer_s"), "training": ("linear", "train_step_s")}
    result = {}
    for phase, (reference, measure) in phases.items():
        base = getattr(rows[reference], measure)
        extra = {name: getattr(rows[name], measure) - base for name in ("puma", "prompts_only", "adapters_only")}
        total = extra["puma"]
        result[phase] = PhaseOverhead(
            reference=reference,
            puma_extra_s=total,
            prompts_extra_s=extra["prompts_only"],
            adapters_extra_s=extra["adapters_only"],
            prompts_share=extra["prompts_only"] / total if total > 0 else None,
            adapters_share=extra["adapters_only"] / total if total > 0 else None,
        )
    return result
