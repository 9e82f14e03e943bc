"""XLA's CPU convolutions, YNNPACK (jaxlib's default) vs Eigen (keras_resnet's), vs PyTorch:
GFLOP/s of the forward pass, input gradient and weight gradient of each 3x3 convolution of
ResNet-18's CIFAR stages, a process per setting, as XLA reads its flags once a process."""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys

import numpy as np

from benchmarks import common

SETTINGS = {  # each XLA row's XLA_FLAGS
    "xla-ynnpack": "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution",
    "xla-eigen": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
}
ROWS = (*SETTINGS, "torch")
STAGES = ((32, 64), (16, 128), (8, 256), (4, 512))  # (side, channels) of ResNet-18's stages
OPS = ("forward", "input grad", "weight grad")


def xla_ops(x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> list:
    """Each op as a call that returns once XLA has done it; NHWC, HWIO."""
    import jax
    from jax import lax

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip

    ops = [jax.jit(lambda x, w, dy: conv(x, w)),
           jax.jit(lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)),
           jax.jit(lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy))]  # fmt: skip
    arrays = [jax.device_put(a) for a in (x, w, dy)]
    return [lambda op=op: jax.block_until_ready(op(*arrays)) for op in ops]


def torch_ops(x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> list:
    """The same in PyTorch, on NCHW views of the NHWC arrays: channels_last."""
    import torch

    x, dy = (torch.from_numpy(a).permute(0, 3, 1, 2) for a in (x, dy))
    w = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous()
    backward = functools.partial(torch.ops.aten.convolution_backward, dy, x, w, None, (1, 1),
                                 (1, 1), (1, 1), False, (0, 0), 1)  # fmt: skip
    return [lambda: torch.nn.functional.conv2d(x, w, padding=1),
            lambda: backward((True, False, False)),
            lambda: backward((False, True, False))]  # fmt: skip


def worker(row: str, batch: int, repeats: int) -> dict:
    """GFLOP/s of each op at each stage, under this process's ``XLA_FLAGS``."""
    rng, stages = np.random.default_rng(0), {}
    for side, channels in STAGES:
        x, dy = (rng.standard_normal((batch, side, side, channels), np.float32) for _ in range(2))
        w = 0.05 * rng.standard_normal((3, 3, channels, channels), np.float32)
        gflop = 2 * batch * side * side * channels * channels * 9 / 1e9
        ops = (torch_ops if row == "torch" else xla_ops)(x, w, dy)
        rates = [gflop / common.median_seconds(run, repeats) for run in ops]
        stages[f"{side}x{side}x{channels}"] = dict(zip(OPS, rates, strict=True))
    return {row: {"stages": stages, "xla_flags": os.environ["XLA_FLAGS"]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=common.positive_int, default=128)
    parser.add_argument("--repeats", type=common.positive_int, default=5, help="timed, median")
    parser.add_argument("--json", help="default: benchmarks/results/cpu_convolutions.json")
    parser.add_argument("--worker", choices=ROWS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # its setting before JAX starts
        os.environ.update(XLA_FLAGS=SETTINGS.get(args.worker, ""), JAX_PLATFORMS="cpu")
        common.send_result(worker(args.worker, args.batch, args.repeats))
        return 0
    argv = ["--batch", str(args.batch), "--repeats", str(args.repeats)]
    results = common.run_rows("cpu_convolutions", list(ROWS), argv)
    cells = []
    for side, channels in STAGES:
        stage = f"{side}x{side}x{channels}"
        for op in OPS:
            values = [results[row].get("stages", {}).get(stage, {}).get(op) for row in ROWS]
            ynn, eigen, torch = values
            cells.append([stage, op, *(f"{v:,.0f}" if v else "-" for v in values),
                          f"{eigen / ynn:.2f}x" if eigen and ynn else "-",
                          f"{torch / eigen:.2f}x" if torch and eigen else "-"])  # fmt: skip
    columns = ["stage (HxWxC)", "op", *ROWS, "eigen / ynnpack", "torch / eigen"]
    settings = {"batch": args.batch, "repeats": args.repeats,
                "cpu": platform.processor() or platform.machine()}  # fmt: skip
    notes = [f"{row} failed: {r['error']}" for row, r in results.items() if "error" in r]
    table = common.markdown(columns, "llrrrrr", cells)
    common.publish("cpu_convolutions", args.json, settings, table, notes, xla_flags=SETTINGS,
                   results=results)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
