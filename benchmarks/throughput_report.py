"""The table, ratios and header that ``benchmarks.throughput`` prints from its workers' rows."""

from __future__ import annotations

import os

from benchmarks.common import fmt_bytes, fmt_rate, slug


def median_round(found: list[dict], rounds: int) -> dict:
    """One framework's row: the median round's by training rate, or the first error."""
    good = sorted(
        (row for row in found if "error" not in row), key=lambda r: r["train_images_per_s"]
    )
    if not good:
        return found[0]
    row = dict(good[(len(good) - 1) // 2])
    if rounds > 1:
        row["train_images_per_s_rounds"] = [r.get("train_images_per_s") for r in found]
    return row


def describe_device(workers: dict) -> tuple[str, str]:
    """A header phrase and a file-name slug for the device the rows ran on."""
    parts, device_slug = [], None
    jax_device = next(
        (workers[n]["device"] for n in ("keras", "jax") if workers.get(n, {}).get("device")), None
    )
    torch_device = workers.get("torch", {}).get("device")
    for framework, device in (("JAX", jax_device), ("PyTorch", torch_device)):
        if device:
            parts.append(f"{framework} {device['platform']} ({device['device_kind']})")
            device_slug = device_slug or (
                "cpu" if device["platform"] == "cpu" else slug(device["device_kind"])
            )
    return ", ".join(parts) or "unknown", device_slug or "unknown"


def markdown_table(rows: dict) -> str:
    keras_rate = (rows.get("keras") or {}).get("train_images_per_s")
    lines = [
        "| framework | train img/s | vs keras | compile s | eval img/s | peak memory |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, row in rows.items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error'].splitlines()[0][:80]} | | | | |")
            continue
        rate = row.get("train_images_per_s")
        vs = f"{rate / keras_rate:.2f}x" if rate and keras_rate else "-"
        first = row.get("first_step_s")
        compile_s = f"{first:.1f}" if first is not None else "-"
        if name == "keras-trainer" and row.get("first_step_note"):
            compile_s = f"({first:.1f}, compiled above)"
        lines.append(
            f"| {name} | {fmt_rate(rate)} | {vs} | {compile_s} | "
            f"{fmt_rate(row.get('eval_images_per_s'))} | "
            f"{fmt_bytes(row.get('peak_memory_bytes'), row.get('peak_memory_kind'))} |"
        )
    return "\n".join(lines)


def ratios(rows: dict) -> dict:
    keras_rate = (rows.get("keras") or {}).get("train_images_per_s")
    out = {}
    for other in ("jax", "torch", "keras-trainer"):
        rate = (rows.get(other) or {}).get("train_images_per_s")
        if keras_rate and rate:
            out[f"keras/{other}"] = keras_rate / rate
    return out


def ratio_lines(ratio: dict) -> list[str]:
    lines = []
    if "keras/jax" in ratio:
        lines.append(
            f"keras/jax = {ratio['keras/jax']:.2f} (Keras fit reaches "
            f"{100 * ratio['keras/jax']:.0f}% of the hand-written JAX step)"
        )
    if "keras/torch" in ratio:
        lines.append(f"keras/torch = {ratio['keras/torch']:.2f}")
    if "keras/keras-trainer" in ratio:
        lines.append(
            f"keras/keras-trainer = {ratio['keras/keras-trainer']:.2f} (the trainer's input "
            "path and per-step log reads)"
        )
    return lines


def header(args, workers: dict, device_text: str, load: tuple, versions: dict, date: str) -> str:
    keras_info = workers.get("keras", {})
    spe = keras_info.get("steps_per_execution")
    counts = [w["parameters"] for w in workers.values() if "parameters" in w]
    steps, warmup = keras_info.get("steps", args.steps), keras_info.get("warmup", args.warmup)
    return (
        f"**{args.model}** ({f'{counts[0]:,}' if counts else '?'} trainable parameters), "
        f"batch {args.batch_size}, {args.precision}, {steps} timed steps after {warmup} "
        f"warm-up, eval batch {args.eval_batch_size} x {args.eval_steps}"
        f"{f', median of {args.rounds} interleaved rounds' if args.rounds > 1 else ''}"
        f"{f', steps_per_execution {spe}' if spe else ''}\n"
        f"device: {device_text}; host: {os.cpu_count()} CPU cores, load average "
        f"{load[0]:.1f} -> {load[1]:.1f}\n"
        f"versions: {', '.join(f'{k} {v}' for k, v in versions.items() if v)}; {date}"
    )
