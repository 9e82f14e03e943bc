"""XLA's CPU convolutions, YNNPACK (jaxlib's default) vs Eigen (keras_resnet's), vs PyTorch.

GFLOP/s of the forward pass, input gradient and weight gradient of each 3x3 convolution of
ResNet-18's CIFAR stages, one process per setting: XLA reads its flags once per process.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from benchmarks.common import (
    RESULTS_DIR,
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
ROWS = (*SETTINGS, "torch")
STAGES = ((32, 64), (16, 128), (8, 256), (4, 512))  # (side, channels) of ResNet-18's stages
OPS = ("forward", "input grad", "weight grad")


def gflops(batch: int, side: int, channels: int) -> float:
    return 2 * batch * side * side * channels * channels * 9 / 1e9


def xla_worker(args: argparse.Namespace) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    def conv(x, w):
        return lax.conv_general_dilated(
            x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    def input_grad(x, w, dy):
        return jax.vjp(lambda x: conv(x, w), x)[1](dy)[0]

    def weight_grad(x, w, dy):
        return jax.vjp(lambda w: conv(x, w), w)[1](dy)[0]

    rng = np.random.default_rng(0)
    result = {}
    for side, channels in STAGES:
        shape = (args.batch, side, side, channels)
        x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
        dy = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
        w = jnp.asarray(0.05 * rng.standard_normal((3, 3, channels, channels), dtype=np.float32))
        functions = {"forward": (jax.jit(conv), (x, w)),
                     "input grad": (jax.jit(input_grad), (x, w, dy)),
                     "weight grad": (jax.jit(weight_grad), (x, w, dy))}  # fmt: skip
        result[f"{side}x{side}x{channels}"] = {
            op: gflops(args.batch, side, channels)
            / median_seconds(lambda f=f, a=a: jax.block_until_ready(f(*a)), args.repeats)
            for op, (f, a) in functions.items()
        }
    return {"stages": result, "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "versions": {"jax": jax.__version__}}  # fmt: skip


def torch_worker(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    result = {}
    for side, channels in STAGES:
        nchw = (args.batch, channels, side, side)
        x, dy = (torch.from_numpy(rng.standard_normal(nchw, dtype=np.float32))
                 .contiguous(memory_format=torch.channels_last) for _ in range(2))  # fmt: skip
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
        result[f"{side}x{side}x{channels}"] = {
            op: gflops(args.batch, side, channels) / median_seconds(function, args.repeats)
            for op, function in functions.items()
        }
    return {"stages": result, "versions": {"torch": torch.__version__},
            "threads": torch.get_num_threads()}  # fmt: skip


def run_row(args: argparse.Namespace, row: str) -> dict:
    print(f"[{row}] running ...", file=sys.stderr, flush=True)
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    if row in SETTINGS:
        env["XLA_FLAGS"] = SETTINGS[row]
    argv = ["--worker", row, "--batch", str(args.batch), "--repeats", str(args.repeats)]
    return run_worker("cpu_convolutions", argv, env)


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=positive_int, default=128)
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed calls (median)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"subset of {','.join(ROWS)}")
    parser.add_argument("--json", help="default: benchmarks/results/cpu_convolutions.json")
    parser.add_argument("--worker", choices=ROWS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rows = rows_chosen(parser, args.rows, ROWS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        send_result(torch_worker(args) if args.worker == "torch" else xla_worker(args))
        return 0
    results = {row: run_row(args, row) for row in args.rows}
    header = (
        f"CPU convolutions, batch {args.batch}, 3x3 stride 1, float32, GFLOP/s (median of "
        f"{args.repeats}); {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(load average {os.getloadavg()[0]:.1f}); {utc_now()}"
    )
    notes = [f"{row} failed: {r['error']}" for row, r in results.items() if "error" in r]
    path = Path(args.json or RESULTS_DIR / "cpu_convolutions.json")
    publish("cpu_convolutions", path, header, conv_table(results), notes, batch=args.batch,
            settings=SETTINGS, results=results)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
