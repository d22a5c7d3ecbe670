"""python -m framegan.export: a checkpoint's generator as one ONNX file, for ONNX Runtime (here,
``--backend onnx``) or onnxruntime-web in a browser.

Frames are ``(B, T, C, H, W)`` float in [-1, 1] in the model (uint8 ``(T, H, W, 3)`` on disk).

    python -m framegan.export --checkpoint run/checkpoints/last.pt --out g.onnx

The graph (G_ema, fp32; ONNX opset 17 from the TorchScript exporter, 20 from the dynamo one; any
batch size, the frame size fixed):
  inputs
    x       float32 [batch, K, C, H, W]  the last K frames, oldest first, RGB, in [-1, 1]
                                         (uint8 pixel p -> p / 127.5 - 1); C = 3
    z       float32 [batch, z_dim]       only when z_dim > 0. The first z_cont values are noise:
                                         N(0, 1) for z_dist "gaussian", U(-1, 1) for "uniform";
                                         the last z_classes values are a one-hot class. Keep one z
                                         per sample for a whole rollout (z picks a future).
    action  int64   [batch] or           only when num_actions > 0: the index (0..num_actions-1)
            [batch, action_history]      into action_values of the key pressed after the last
                                         frame of x; with action_history L > 1, the keys pressed
                                         after the last L frames of x, oldest first
  output
    frame   float32 [batch, C, H, W]     the next frame in [-1, 1] (p = round((v + 1) * 127.5))
For a rollout, append ``frame`` to x (dropping its oldest frame) and run again.
Metadata (``metadata_props``, strings): framegan.context, .channels, .height, .width, .z_dim,
.z_cont, .z_classes, .z_dist, .num_actions, .action_history, .action_values and .action_names (JSON lists), .fps,
.exporter, .key (sha256 of the weights: ``framegan.inference`` reuses a file whose key matches).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from framegan.atomic import atomic_path, output_dir
from framegan.cli import Parser, UsageError, run_main
from framegan.inference import EXPORTERS, export_onnx, input_names, onnx_available, weights_key


def parse_args(argv=None):
    ap = Parser(prog="python -m framegan.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoint file (G_ema is exported)")
    ap.add_argument("--out", default=None, help="output .onnx file (default: <checkpoint stem>.onnx beside it)")
    ap.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                    help="frame size (default: the checkpoint's training frames)")
    ap.add_argument("--exporter", choices=["auto", *EXPORTERS], default="auto",
                    help="torch.onnx exporter (auto: torchscript, then dynamo if that fails)")
    args = ap.parse_args(argv)
    args.out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(".onnx")
    if args.out.suffix.lower() != ".onnx":
        raise UsageError(f"{args.out}: the output must be a .onnx file")
    return args


def run(args) -> Path:
    from framegan.checkpoint import check_path

    check_path(args.checkpoint)  # before --out: its default lies beside the checkpoint
    with output_dir(args.out.parent, args.out):  # an --out that cannot be written fails before the export
        return _export(args)


def _export(args) -> Path:
    from framegan.checkpoint import load_generator

    if why := onnx_available():
        raise UsageError(f"cannot export: {why}")
    G, _, store_info = load_generator(args.checkpoint, "cpu")
    size = tuple(args.size or store_info.get("size") or ())
    if len(size) != 2:
        raise UsageError(f"{args.checkpoint}: the checkpoint records no frame size; pass --size H W")
    m = 2 ** getattr(G, "depth", 0)
    if size[0] < m or size[1] < m or size[0] % m or size[1] % m:
        raise UsageError(f"--size {size[0]} {size[1]}: H and W must be positive multiples of {m} for this model")
    actions = store_info.get("actions") or {}  # {"values": raw ids, "names": ...} (train.py)
    meta = {"framegan.z_cont": str(getattr(G, "z_cont", G.z_dim)),
            "framegan.z_classes": str(getattr(G, "z_classes", 0)),
            "framegan.z_dist": str(getattr(G, "z_dist", "gaussian")),
            "framegan.action_values": json.dumps(list(actions.get("values", []))),
            "framegan.action_names": json.dumps(list(actions.get("names", []))),
            "framegan.fps": str(store_info.get("fps", "")),
            "framegan.key": weights_key(G, size)}
    t0 = time.perf_counter()
    with atomic_path(args.out) as tmp:  # --out appears only once onnxruntime has run the file
        try:
            exporter = export_onnx(G, tmp, size, args.exporter, meta)
        except RuntimeError as e:
            raise UsageError(str(e).splitlines()[0]) from None
        seconds = time.perf_counter() - t0
        try:
            diff = check(G, tmp, size)
        except Exception as e:  # noqa: BLE001 - onnxruntime's own errors (Fail, InvalidGraph, ...) are plain Exceptions
            why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise UsageError(f"{args.out}: onnxruntime cannot run the export ({why}); nothing written") from None
    shapes = {"x": f"[batch, {G.context}, {G.channels}, {size[0]}, {size[1]}] float32",
              "z": f"[batch, {G.z_dim}] float32",
              "action": f"[{', '.join(map(str, G.action_shape('batch')))}] int64 in [0, {G.num_actions})"}
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {exporter} exporter, {seconds:.1f} s)")
    print("inputs: " + "; ".join(f"{n} {shapes[n]}" for n in input_names(G))
          + f"; output: frame [batch, {G.channels}, {size[0]}, {size[1]}] float32 in [-1, 1]")
    print(f"check: max |onnxruntime - torch| = {diff:.1e} on a random batch of 2")
    return args.out


def check(G, path: Path, size: tuple[int, int]) -> float:
    """Max abs difference between ONNX Runtime on ``path`` and G on one random batch of 2."""
    import onnxruntime as ort

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, G.context, G.channels, *size, generator=gen) * 2 - 1
    z = G.sample_z(2, generator=gen) if G.z_dim > 0 else None
    a = torch.randint(max(G.num_actions, 1), G.action_shape(2), generator=gen) if G.num_actions > 0 else None
    with torch.no_grad():
        ref = G(x, z, a)
    values = {"x": x, "z": z, "action": a}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(["frame"], {n: values[n].numpy() for n in input_names(G)})[0]
    return float((torch.from_numpy(out) - ref).abs().max())


def main(argv=None) -> int:
    from framegan.checkpoint import CheckpointError

    return run_main(lambda: run(parse_args(argv)), errors=(CheckpointError,))


if __name__ == "__main__":
    sys.exit(main())
