"""XLA's CPU convolutions, YNNPACK (jaxlib's default) vs Eigen (keras_resnet's), vs PyTorch.

GFLOP/s of the forward pass, input gradient and weight gradient of each 3x3 convolution of
ResNet-18's CIFAR stages, one process per setting (XLA reads its flags once per process). With
``--train-model``, ``benchmarks.throughput``'s Keras row under each XLA setting and its PyTorch
row too. The rows are described in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from benchmarks.common import (
    RESULTS_DIR,
    fmt_rate,
    median_seconds,
    positive_int,
    publish,
    rows_chosen,
    run_worker,
    send_result,
    utc_now,
)

YNN_OPTION = "--xla_cpu_experimental_ynn_fusion_type"
SETTINGS = {
    "xla-ynnpack": f"{YNN_OPTION}=+individual_convolution",
    "xla-eigen": f"{YNN_OPTION}=-individual_convolution",
}
ROWS = ("xla-ynnpack", "xla-eigen", "xla-eigen-matmul-wgrad", "torch")
STAGES = ((32, 64), (16, 128), (8, 256), (4, 512))  # (side, channels) of ResNet-18's stages
OPS = ("forward", "input grad", "weight grad")


def gflops(batch: int, side: int, channels: int) -> float:
    return 2 * batch * side * side * channels * channels * 9 / 1e9


def xla_worker(args, matmul_wgrad: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    def conv(x, w):
        return lax.conv_general_dilated(
            x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    def weight_grad(x, w, dy):
        return jax.vjp(lambda w: conv(x, w), w)[1](dy)[0]

    def weight_grad_matmul(x, w, dy):
        """dW[i, j] = x shifted by (i, j), flattened, transposed, times dy flattened."""
        _, h, width, c = x.shape
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        dy = dy.reshape(-1, dy.shape[-1])
        rows = [
            jnp.stack([padded[:, i : i + h, j : j + width].reshape(-1, c).T @ dy for j in range(3)])
            for i in range(3)
        ]
        return jnp.stack(rows)

    def input_grad(x, w, dy):
        return jax.vjp(lambda x: conv(x, w), x)[1](dy)[0]

    rng = np.random.default_rng(0)
    result = {}
    for side, channels in STAGES:
        shape = (args.batch, side, side, channels)
        x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
        dy = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
        w = jnp.asarray(0.05 * rng.standard_normal((3, 3, channels, channels), dtype=np.float32))
        functions = {
            "forward": (jax.jit(conv), (x, w)),
            "input grad": (jax.jit(input_grad), (x, w, dy)),
            "weight grad": (
                jax.jit(weight_grad_matmul if matmul_wgrad else weight_grad),
                (x, w, dy),
            ),
        }
        if matmul_wgrad:  # only the weight gradient differs from xla-eigen; check it agrees
            functions = {"weight grad": functions["weight grad"]}
            expected = jax.jit(weight_grad)(x, w, dy)
            got = functions["weight grad"][0](x, w, dy)
            error = float(jnp.abs(got - expected).max() / jnp.abs(expected).max())
            if error > 1e-4:
                raise AssertionError(f"matmul weight gradient is off by {error:.1e} (relative)")
        key = f"{side}x{side}x{channels}"
        result[key] = {}
        for op, (function, inputs) in functions.items():
            seconds = median_seconds(
                lambda f=function, a=inputs: jax.block_until_ready(f(*a)), args.repeats
            )
            result[key][op] = gflops(args.batch, side, channels) / seconds
    return {
        "stages": result,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "versions": {"jax": jax.__version__},
    }


def torch_worker(args) -> dict:
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    result = {}
    for side, channels in STAGES:
        nchw = (args.batch, channels, side, side)
        x = torch.from_numpy(rng.standard_normal(nchw, dtype=np.float32))
        x = x.contiguous(memory_format=torch.channels_last)
        dy = torch.from_numpy(rng.standard_normal(nchw, dtype=np.float32))
        dy = dy.contiguous(memory_format=torch.channels_last)
        w = torch.from_numpy(
            0.05 * rng.standard_normal((channels, channels, 3, 3), dtype=np.float32)
        )

        def backward(mask, x=x, dy=dy, w=w):
            return torch.ops.aten.convolution_backward(
                dy, x, w, None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1, mask
            )

        functions = {
            "forward": lambda x=x, w=w: torch.nn.functional.conv2d(x, w, padding=1),
            "input grad": lambda: backward((True, False, False)),
            "weight grad": lambda: backward((False, True, False)),
        }
        key = f"{side}x{side}x{channels}"
        result[key] = {
            op: gflops(args.batch, side, channels) / median_seconds(function, args.repeats)
            for op, function in functions.items()
        }
    return {
        "stages": result,
        "versions": {"torch": torch.__version__},
        "threads": torch.get_num_threads(),
    }


def cpu_env(xla_flags: str | None) -> dict:
    """This process's environment on the CPU, under ``XLA_FLAGS=xla_flags`` where given."""
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    return env if xla_flags is None else {**env, "XLA_FLAGS": xla_flags}


def run_row(args, row: str) -> dict:
    print(f"[{row}] running ...", file=sys.stderr, flush=True)
    flags = None if row == "torch" else SETTINGS.get(row, SETTINGS["xla-eigen"])
    argv = ["--worker", row, "--batch", str(args.batch), "--repeats", str(args.repeats)]
    return run_worker("cpu_convolutions", argv, cpu_env(flags))


def run_training(args) -> dict:
    """benchmarks.throughput's keras row under each XLA setting, and its torch row once."""
    rows = {}
    plan = [(name, flags, "keras") for name, flags in SETTINGS.items()] + [("torch", None, "torch")]
    for name, flags, framework in plan:
        print(f"[train {name}] {args.train_model} ...", file=sys.stderr, flush=True)
        argv = ["--worker", framework, "--frameworks", framework, "--model", args.train_model,
                "--batch-size", str(args.train_batch_size), "--steps", str(args.train_steps),
                "--warmup", str(args.train_warmup), "--eval-steps", "0"]  # fmt: skip
        result = run_worker("throughput", argv, cpu_env(flags))
        rows[name] = result["rows"][framework] if "rows" in result else result
    return rows


def conv_table(results: dict) -> str:
    columns = [r for r in ROWS if r in results]
    lines = [
        "| stage (HxWxC) | op | " + " | ".join(columns) + " | eigen / ynnpack | torch / eigen |",
        "|---|---|" + "---:|" * (len(columns) + 2),
    ]
    for side, channels in STAGES:
        key = f"{side}x{side}x{channels}"
        for op in OPS:
            values = {r: results[r].get("stages", {}).get(key, {}).get(op) for r in columns}
            cells = [f"{v:,.0f}" if v else "-" for v in values.values()]
            eigen, ynn, torch = (values.get(k) for k in ("xla-eigen", "xla-ynnpack", "torch"))
            speedup = f"{eigen / ynn:.2f}x" if eigen and ynn else "-"
            gap = f"{torch / eigen:.2f}x" if torch and eigen else "-"
            lines.append(f"| {key} | {op} | " + " | ".join(cells) + f" | {speedup} | {gap} |")
    return "\n".join(lines)


def training_table(rows: dict, model: str) -> str:
    torch_rate = (rows.get("torch") or {}).get("train_images_per_s")
    lines = [
        f"| {model} training | img/s | PyTorch / this |",
        "|---|---:|---:|",
    ]
    for name, row in rows.items():
        rate = row.get("train_images_per_s")
        ratio = f"{torch_rate / rate:.2f}x" if rate and torch_rate else "-"
        label = {"torch": "PyTorch"}.get(name, f"Keras fit, {name}")
        lines.append(f"| {label} | {fmt_rate(rate) if rate else row.get('error', '-')[:60]} | "
                     f"{ratio} |")  # fmt: skip
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=positive_int, default=128)
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed calls (median)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"subset of {','.join(ROWS)}")
    parser.add_argument("--train-model", help="also time training of this model per setting")
    parser.add_argument("--train-batch-size", type=positive_int, default=128)
    parser.add_argument("--train-steps", type=positive_int, default=10)
    parser.add_argument("--train-warmup", type=positive_int, default=2)
    parser.add_argument("--json", help="default: benchmarks/results/cpu_convolutions.json")
    parser.add_argument("--worker", choices=ROWS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rows = rows_chosen(parser, args.rows, ROWS)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker == "torch":
        send_result(torch_worker(args))
    elif args.worker:
        send_result(xla_worker(args, matmul_wgrad=args.worker == "xla-eigen-matmul-wgrad"))
    if args.worker:
        return 0
    results = {row: run_row(args, row) for row in args.rows}
    training = run_training(args) if args.train_model else {}
    header = (
        f"CPU convolutions, batch {args.batch}, 3x3 stride 1, float32, GFLOP/s (median of "
        f"{args.repeats}); {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(load average {os.getloadavg()[0]:.1f}); {utc_now()}"
    )
    notes = [f"{row} failed: {r['error']}" for row, r in results.items() if "error" in r]
    if training:
        notes += ["", training_table(training, args.train_model)]
    path = Path(args.json or RESULTS_DIR / "cpu_convolutions.json")
    training_report = {"model": args.train_model, "rows": training} if training else None
    publish("cpu_convolutions", path, header, conv_table(results), notes, batch=args.batch,
            settings=SETTINGS, results=results, training=training_report)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
