"""Fast prediction with a trained generator: one predictor, several backends, and the
autoregressive loop that rollout, evaluate, play and training's validation all run.

Frames are ``(B, T, C, H, W)`` float in [-1, 1] here (uint8 ``(T, H, W, 3)`` on disk). A
``Predictor`` maps ``(x (B, K, C, H, W) float32, z (B, z_dim) | None, action int64 | None)``
to the next frame ``(B, C, H, W)`` float32 in [-1, 1], like ``G`` itself, on G's device; ``action``
is ``(B,)``, or ``(B, L)`` for a G with a key history of L (``G.action_shape``).

Backends (``--backend`` of rollout and evaluate):
  torch    eager PyTorch, channels_last weights; ``precision`` fp32, or bf16 autocast
  compile  ``torch.compile`` (inductor, weights frozen) of the same; the first call of each batch
           size compiles (minutes on a small CPU), so it only pays for long runs
  onnx     ONNX Runtime (CPUExecutionProvider), fp32, on G exported with ``torch.onnx.export``
           (``export_onnx``); the export is cached next to the checkpoint (``<stem>.cache.onnx``),
           keyed by a hash of the weights stored in the file's metadata, so only the first call
           pays it; ``framegan.export``'s own file (``<stem>.onnx``) is used when its key matches,
           never overwritten
  auto     the rule below

``auto`` (the rule). Figures: rollout frames/s through this module's loop, as ratios to torch
eager fp32 in the same run of benchmarks/rollout_speed.py, 1 thread, on a 2-core Xeon with
AVX512-BF16 + AMX that other jobs shared (2-thread figures there were swamped by that load):
  - CUDA: torch with the auto precision (bf16, fp16 where bf16 is missing); the onnxruntime
    wheel is CPU-only.
  - CPU with native bf16, precision auto: onnx up to batch ``ONNX_MAX_BATCH_BF16``, torch bf16
    autocast (channels_last) above. Batch 1: onnx 1.82x, torch bf16 1.64x, torch fp32
    channels_last 1.30x (288 / 260 / 207 frames/s); batch 2: 1.99x vs 1.90x (a tie); batch 4:
    torch bf16 2.32x vs onnx 1.58x; batch 8: 2.35x vs 1.46x. Small batches are bound by per-op
    overhead (G is 0.28 GFLOP per 64x64 frame), which ONNX Runtime's optimised graph cuts; at
    larger batches the arithmetic dominates, and AMX bf16 halves it.
  - CPU with AVX-512 but no native bf16, or precision fp32 on the native-bf16 one: onnx at every
    batch size. fp32 vs fp32: onnx 1.82x / 1.58x / 1.46x / 1.29x vs torch channels_last 1.30x /
    1.40x / 1.36x / 1.23x at batch 1 / 4 / 8 / 32 (the AVX-512 Xeon).
  - CPU without AVX-512 (AVX2 only): onnx up to batch ``ONNX_MAX_BATCH_AVX2``, torch fp32
    channels_last above. Measured on a 2-core AMD EPYC (AVX2, 2 threads, one run of
    ``rollout_speed.py --batch 1 2 4 8 16 32 --threads 2``): onnx 2.08x / 1.86x / 1.57x / 1.31x /
    1.29x / 1.47x vs torch channels_last 1.28x / 1.50x / 1.45x / 1.43x / 1.48x / 1.62x at batch
    1 / 2 / 4 / 8 / 16 / 32 (300 / 328 / 332 / 343 / 346 / 344 frames/s for onnx, 185 / 265 /
    307 / 373 / 399 / 380 for torch): ONNX Runtime's graph wins while per-op overhead dominates,
    oneDNN's AVX2 fp32 convs once the arithmetic does.
    bf16 is never picked without native bf16: oneDNN emulates it, 4x slower than fp32 on that
    EPYC (``framegan.precision``).
  - precision bf16 asked for: torch (ONNX Runtime runs fp32 only; ``backend=onnx`` with bf16 is
    an error).
  - compile: never picked by auto. Its first call took 10-60 s per batch size on that machine
    (130-260 s under heavier load), longer than a CLI run, and compiled it did not win
    consistently: batch 1 compile bf16 2.76x vs onnx 3.21x; batch 32 3.25x vs eager bf16 3.44x
    (another run: 3.65x vs 3.01x).
  - onnxruntime not installed, or the export fails: torch, with a one-line note
    (``Predictor.notes``).
``auto`` decides per call from the batch size, so one predictor serves a batch-1 game loop and a
batched evaluation.

Threads on the onnx path: ONNX Runtime gets torch's thread count when the predictor is made;
inside the loop torch itself runs on one thread, and ORT's idle workers spin for the next call
(``Predictor.spin``; play turns spinning off). Batch-1 rollout, 2 threads, the 2-core Xeon:
about 270 frames/s with both at 2 threads, 315 with torch on 1, 345-380 with spinning too.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from einops import rearrange, repeat

from framegan import precision as precisions
from framegan.atomic import atomic_path

BACKENDS = ("auto", "torch", "onnx", "compile")
ONNX_MAX_BATCH_BF16 = 2  # auto on native-bf16 CPUs: ONNX Runtime up to this batch, torch bf16 above
ONNX_MAX_BATCH_AVX2 = 4  # auto in fp32 on CPUs without AVX-512: ONNX Runtime up to this batch, torch above
ONNX_OPSET = 17          # opset of the TorchScript exporter; onnxruntime-web runs it too
ONNX_FORMAT = 1          # bump when the exported graph's interface changes: invalidates every cache
# torch.compile options of the compile backend: inductor, weights frozen into the graph as constants
COMPILE_OPTIONS = {"backend": "inductor", "options": {"freezing": True}}
EXAMPLE_BATCH = 2        # export example batch: torch.export specialises a size-1 dimension to 1
INPUTS = ("x", "z", "action")
OUTPUT = "frame"


class BackendError(ValueError):
    """A backend/precision combination that cannot run (one line, for the CLIs)."""


# ----------------------------------------------------------------------------- torch (eager)
def use_bf16(device: torch.device | str, precision: str = "auto") -> bool:
    """bf16 autocast for the torch backends? ``auto``: on CUDA and on CPUs with native bf16."""
    return precisions.autocast_dtype(precision, device) == torch.bfloat16


def prepare(G: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """G for fast inference: on ``device``, eval, channels_last weights (oneDNN's preferred layout
    on CPU, tensor cores' on CUDA)."""
    return G.to(device).eval().to(memory_format=torch.channels_last)


@contextlib.contextmanager
def inference(G: torch.nn.Module, precision: str = "auto"):
    """Context for running G: ``no_grad`` + (if ``precision`` resolves to bf16/fp16) autocast that
    casts each weight once per context, not once per call.

    Autocast caches its weight casts only for leaf tensors that require grad, and not at all
    under ``inference_mode`` (measured: 46 vs 21 copies per forward, ~1.5x frames/s at batch 1 on
    CPU). So this uses ``no_grad`` and marks the parameters requires_grad for the duration.
    """
    device = next(G.parameters()).device
    dtype = precisions.autocast_dtype(precision, device)
    frozen = [p for p in G.parameters() if not p.requires_grad] if dtype else []
    for p in frozen:
        p.requires_grad_(True)
    try:
        amp = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with torch.no_grad(), amp:
            yield
    finally:
        for p in frozen:
            p.requires_grad_(False)


# ----------------------------------------------------------------------------- ONNX export
def onnx_available() -> str | None:
    """None when the ONNX backend can run here, else why not (one line)."""
    import importlib.util

    missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
    return f"{' and '.join(missing)} not installed (framegan requires them: pip install -e .)" if missing else None


def input_names(G) -> list[str]:
    """The exported graph's inputs: x, then z (if G.z_dim > 0), then action (if G.num_actions > 0)."""
    return ["x"] + (["z"] if G.z_dim > 0 else []) + (["action"] if G.num_actions > 0 else [])


def weights_key(G: torch.nn.Module, size: tuple[int, int]) -> str:
    """sha256 of what the exported graph depends on: G's weights, its scalar settings (context,
    z_dim, residual, ...), its module structure, the frame size and the export format."""
    h = hashlib.sha256()
    settings = {k: v for k, v in vars(G).items()
                if not k.startswith("_") and k != "training" and isinstance(v, (bool, int, float, str, type(None)))}
    h.update(json.dumps({"format": ONNX_FORMAT, "size": list(size), "settings": settings,
                         "modules": repr(G)}, sort_keys=True).encode())
    for name, t in G.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update((t.float() if t.is_floating_point() else t).numpy().tobytes())
    return h.hexdigest()


def _example(G, size: tuple[int, int], batch: int = EXAMPLE_BATCH) -> tuple:
    x = torch.zeros(batch, G.context, G.channels, *size)
    z = torch.zeros(batch, G.z_dim) if G.z_dim > 0 else None
    a = torch.zeros(G.action_shape(batch), dtype=torch.int64) if G.num_actions > 0 else None
    return x, z, a


class _Inputs(torch.nn.Module):
    """G with exactly the exported inputs as positional arguments (no None placeholders)."""

    def __init__(self, G):
        super().__init__()
        self.G, self.names = G, input_names(G)

    def forward(self, *args):
        kw = dict(zip(self.names, args))
        return self.G(kw["x"], kw.get("z"), kw.get("action"))


@contextlib.contextmanager
def _atanh_symbolic():
    """The TorchScript exporter has no rule for ``aten::atanh`` (G's residual output
    ``tanh(atanh(last) + delta)``), though ONNX has had ``Atanh`` since opset 9: map it for the
    duration of one export, so nets/ need no export-only rewrite."""
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic

    register_custom_op_symbolic("aten::atanh", lambda g, a: g.op("Atanh", a), 9)
    try:
        yield
    finally:
        unregister_custom_op_symbolic("aten::atanh", 9)


def _export_torchscript(model, example, names) -> bytes:
    f = io.BytesIO()
    with _atanh_symbolic(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation banner and tracer notes
        torch.onnx.export(model, example, f, dynamo=False, input_names=names, output_names=[OUTPUT],
                          dynamic_axes={n: {0: "batch"} for n in [*names, OUTPUT]}, opset_version=ONNX_OPSET)
    return f.getvalue()


def _export_dynamo(model, example, names) -> bytes:
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, example, dynamo=True, input_names=names, output_names=[OUTPUT],
                                    dynamic_shapes=(tuple({0: batch} for _ in names),),  # _Inputs' *args
                                    verbose=False)
    return program.model_proto.SerializeToString()


EXPORTERS = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}


def _atanh_as_log(proto):
    """Every ``Atanh`` node as ``0.5 * log((1 + x) / (1 - x))``: ONNX Runtime's Atanh kernel is
    scalar code, measured 6x slower than the five vectorised ops on G's 3x64x64 output (2.1 vs
    0.33 ms, 1 thread), as accurate (max error vs float64 1.41e-7 vs 1.45e-7 on [-0.99, 0.99])."""
    from onnx import helper, numpy_helper

    nodes, graph = [], proto.graph
    for i, node in enumerate(graph.node):
        if node.op_type != "Atanh":
            nodes.append(node)
            continue
        x, y, p = node.input[0], node.output[0], f"atanh_as_log_{i}"
        nodes += [helper.make_node("Add", [f"{p}_one", x], [f"{p}_num"]),
                  helper.make_node("Sub", [f"{p}_one", x], [f"{p}_den"]),
                  helper.make_node("Div", [f"{p}_num", f"{p}_den"], [f"{p}_ratio"]),
                  helper.make_node("Log", [f"{p}_ratio"], [f"{p}_log"]),
                  helper.make_node("Mul", [f"{p}_half", f"{p}_log"], [y])]
        graph.initializer.extend([numpy_helper.from_array(np.array(1.0, np.float32), f"{p}_one"),
                                  numpy_helper.from_array(np.array(0.5, np.float32), f"{p}_half")])
    del graph.node[:]
    graph.node.extend(nodes)
    return proto


def export_onnx(G: torch.nn.Module, path: str | Path, size: tuple[int, int], exporter: str = "auto",
                metadata: dict[str, str] | None = None) -> str:
    """Write G (fp32, eval) as ONNX to ``path`` atomically, for frames of ``size`` (H, W) and any
    batch; returns the exporter used. Inputs/outputs: see ``framegan.export``.

    ``exporter``: torchscript | dynamo | auto (torchscript, then dynamo if it fails). Measured on
    the default G (2-core Xeon, loaded): torchscript 0.8 s, dynamo 17-33 s, the two graphs equally
    fast under ONNX Runtime (238 vs 226 frames/s at batch 1, within the noise). The dynamo exporter
    is torch's supported path and the fallback when the TorchScript one is gone or fails.
    """
    import onnx

    G = copy.deepcopy(G).float().cpu().eval().to(memory_format=torch.contiguous_format)
    names = input_names(G)
    example = tuple(t for t in _example(G, tuple(size)) if t is not None)
    model = _Inputs(G).eval()
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    errors = []
    for name in order:
        try:
            # fp32 graph even when called inside a predictor's bf16 autocast (the trace would record the casts)
            with torch.autocast("cpu", enabled=False), torch.no_grad():
                blob = EXPORTERS[name](model, example, names)
            break
        except Exception as e:  # noqa: BLE001 - any exporter failure means: try the next one
            errors.append(f"{name}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
    else:
        raise RuntimeError("ONNX export failed (" + "; ".join(errors) + ")")
    proto = _atanh_as_log(onnx.load_from_string(blob))
    info = {"framegan.format": str(ONNX_FORMAT), "framegan.exporter": name,
            "framegan.context": str(G.context), "framegan.channels": str(G.channels),
            "framegan.height": str(size[0]), "framegan.width": str(size[1]),
            "framegan.z_dim": str(G.z_dim), "framegan.num_actions": str(G.num_actions),
            "framegan.action_history": str(getattr(G, "action_history", 1)), **(metadata or {})}
    del proto.metadata_props[:]
    for k, v in info.items():
        proto.metadata_props.add(key=k, value=v)
    proto.doc_string = ("framegan generator: x (batch, K, C, H, W) float32 in [-1, 1] [, z (batch, z_dim) "
                        "float32] [, action (batch,) or (batch, action_history) int64 in [0, num_actions), "
                        "oldest key first] -> frame (batch, C, H, W) float32 in [-1, 1]")
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return name


def onnx_cache_path(checkpoint: str | Path | None, key: str) -> Path:
    """Where the inference cache writes the export of a checkpoint: ``<stem>.cache.onnx`` beside
    it; without a checkpoint, a file named by the key in the temp directory. A name of its own:
    ``<stem>.onnx`` is ``framegan.export``'s default output, the user's file (maybe of another
    frame size), which the cache reads when its key matches but never replaces."""
    if checkpoint is not None:
        return Path(checkpoint).with_suffix(".cache.onnx")
    return _temp_cache(key)


def onnx_export_path(checkpoint: str | Path) -> Path:
    """``framegan.export``'s default output for ``checkpoint``: ``<stem>.onnx`` beside it."""
    return Path(checkpoint).with_suffix(".onnx")


def _temp_cache(key: str) -> Path:
    return Path(tempfile.gettempdir()) / "framegan-onnx" / f"{key[:32]}.onnx"


class OnnxRunner:
    """An ONNX Runtime session of G for one frame size: a file whose stored key matches the
    weights is reused (``framegan.export``'s default output, then the cache), else G is exported
    to the cache on first use."""

    def __init__(self, G, size: tuple[int, int], checkpoint: str | Path | None = None,
                 exporter: str = "auto", threads: int | None = None, spin: bool = False):
        self.names = input_names(G)
        self.exported = None  # seconds the export took; None when an existing file was used
        key = weights_key(G, size)
        # beside the checkpoint; where that directory is not writable, the temp directory
        caches = list(dict.fromkeys([onnx_cache_path(checkpoint, key), _temp_cache(key)]))
        exports = [onnx_export_path(checkpoint)] if checkpoint is not None else []
        for self.path in [*exports, *caches]:
            self.session = self._open(self.path, key, threads, spin)
            if self.session is not None:
                return
        for self.path in caches:
            t0 = time.perf_counter()
            try:
                export_onnx(G, self.path, size, exporter, {"framegan.key": key})
            except OSError:
                continue
            self.exported = time.perf_counter() - t0
            self.session = self._open(self.path, key, threads, spin, strict=True)
            return
        raise OSError(f"nowhere to write the ONNX export (tried {self.path.parent})")

    @staticmethod
    def _open(path: Path, key: str, threads: int | None, spin: bool, strict: bool = False):
        """A session of ``path`` if it exists and holds ``key``, else None (``strict``: raise)."""
        import onnxruntime as ort

        if not path.is_file():
            return None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()  # the same threads as torch
        opts.inter_op_num_threads = 1
        # ORT's idle workers spin for new work. That pays in a tight loop whose torch work runs
        # on one thread (``Predictor.active``), and costs where something else needs the cores
        # (play, beside a browser): see ``Predictor.spin``.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        opts.log_severity_level = 3  # errors only
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - a corrupt cache file is re-exported
            if strict:
                raise
            return None
        if session.get_modelmeta().custom_metadata_map.get("framegan.key") == key:
            return session
        if strict:
            raise RuntimeError(f"{path}: the exported file does not hold the expected weights key")
        return None

    def __call__(self, x, z, action) -> torch.Tensor:
        values = {"x": x, "z": z, "action": action}
        feeds = {n: values[n].detach().cpu().contiguous().numpy() for n in self.names}
        return torch.from_numpy(self.session.run([OUTPUT], feeds)[0])


# ----------------------------------------------------------------------------- the predictor
@dataclass(eq=False)
class Predictor:
    """``G`` behind a backend: ``predict(x, z, action)`` -> float32 ``(B, C, H, W)`` in [-1, 1] on
    G's device. Build with ``predictor()``; ``notes`` holds one-line remarks for the user (a
    fallback, an export). Run many calls inside ``with predict.active():`` so bf16 weight casts
    happen once, not per call."""

    G: torch.nn.Module
    backend: str                    # what was asked: auto | torch | onnx | compile
    precision: str                  # what was asked: auto | fp32 | bf16
    checkpoint: str | Path | None = None
    exporter: str = "auto"
    # ONNX Runtime's threads: torch's count when the predictor was made (inside ``active`` torch
    # itself runs on one). ``spin``: its idle workers spin for the next call instead of sleeping.
    # Batch-1 rollout, 2 threads, 2-core Xeon (benchmarks/rollout_speed.py): ~270 f/s with torch on
    # 2 threads beside ORT, ~315 with torch on 1, ~370 with torch on 1 and spinning; with torch
    # on 2 threads spinning halved it (the spinners took the core from torch's OpenMP threads).
    threads: int = field(default_factory=torch.get_num_threads)
    spin: bool = True
    notes: list[str] = field(default_factory=list)
    _onnx: dict = field(default_factory=dict)      # (H, W) -> OnnxRunner
    _compiled: Callable | None = None
    _depth: int = 0

    # G's interface, so a predictor stands in for G wherever only these are read
    @property
    def context(self) -> int:
        return self.G.context

    @property
    def channels(self) -> int:
        return getattr(self.G, "channels", 3)

    @property
    def z_dim(self) -> int:
        return self.G.z_dim

    @property
    def num_actions(self) -> int:
        return getattr(self.G, "num_actions", 0)  # stand-ins without actions (tests' oracles) may omit it

    @property
    def action_history(self) -> int:
        return getattr(self.G, "action_history", 1)

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    def sample_z(self, n: int, device=None, generator: torch.Generator | None = None, classes=None):
        return self.G.sample_z(n, device=device or self.device, generator=generator, classes=classes)

    def backend_for(self, batch: int) -> str:
        """The backend a call of ``batch`` frames runs on (``auto`` resolved)."""
        if self.backend != "auto":
            return self.backend
        if self.device.type != "cpu" or self.precision == "bf16":
            return "torch"
        if use_bf16(self.device, self.precision):  # auto precision on a CPU with native bf16
            return "onnx" if batch <= ONNX_MAX_BATCH_BF16 else "torch"
        if not precisions.cpu_has_avx512():  # fp32 on an AVX2 CPU
            return "onnx" if batch <= ONNX_MAX_BATCH_AVX2 else "torch"
        return "onnx"

    def precision_for(self, batch: int) -> str:
        """fp32 | bf16 | fp16: the dtype a call of ``batch`` frames computes in."""
        if self.backend_for(batch) == "onnx":
            return "fp32"
        dtype = precisions.autocast_dtype(self.precision, self.device)
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]

    def describe(self, batch: int) -> str:
        """e.g. ``onnx fp32`` or ``torch bf16``."""
        return f"{self.backend_for(batch)} {self.precision_for(batch)}"

    @contextlib.contextmanager
    def active(self, batch: int = 1) -> Iterator[None]:
        """no_grad (+ cached bf16 autocast) for the torch backends, entered once for many calls
        of ``batch`` frames. Where those run on ONNX Runtime, torch runs on one thread meanwhile:
        its work between two calls (clamp, cat, noise) is tiny, and OpenMP threads that wait
        for more would take the cores from ONNX Runtime's."""
        if self._depth:
            yield
            return
        self._depth += 1
        threads = torch.get_num_threads()
        single = self.backend_for(batch) == "onnx" and self.device.type == "cpu"
        try:
            if single:
                torch.set_num_threads(1)
            with inference(self.G, "fp32" if self.backend == "onnx" else self.precision):
                yield
        finally:
            if single:
                torch.set_num_threads(threads)
            self._depth -= 1

    def warm(self, size: tuple[int, int], batch: int = 1) -> None:
        """Export / open ONNX or compile now for ``size`` frames (H, W) rather than on first call."""
        x, z, a = _example(self.G, size, batch)
        dev = self.device
        self(x.to(dev), None if z is None else z.to(dev), None if a is None else a.to(dev))

    def __call__(self, x: torch.Tensor, z: torch.Tensor | None = None,
                 action: torch.Tensor | None = None) -> torch.Tensor:
        backend = self.backend_for(x.shape[0])
        if backend == "onnx":
            runner = self._runner(tuple(x.shape[-2:]))
            if runner is not None:
                return runner(x, z, action).to(self.device)
        with self.active():
            if backend == "compile":
                y = self._compile(x, z, action)
                if y is not None:
                    return y.float()
            return (self.G(x, z) if action is None else self.G(x, z, action)).float()

    def _runner(self, size: tuple[int, int]):
        """The ONNX Runtime session for ``size``; None (torch from then on, with a note) when it
        cannot be built."""
        if size in self._onnx:
            return self._onnx[size]
        runner = None
        try:
            if why := onnx_available():
                raise RuntimeError(why)
            runner = OnnxRunner(self.G, size, self.checkpoint, self.exporter, self.threads, self.spin)
            if runner.exported is not None:
                self.notes.append(f"exported G to ONNX in {runner.exported:.1f} s: {runner.path} "
                                  f"(reused while the weights stay the same)")
        except Exception as e:  # noqa: BLE001 - any failure: fall back to torch and say why
            self.notes.append(f"ONNX backend unavailable ({str(e).strip().splitlines()[0][:200]}); using torch")
            self.backend = "torch"
        self._onnx[size] = runner
        return runner

    def _compile(self, x, z, action):
        if self._compiled is None:
            self._compiled = torch.compile(self.G, **COMPILE_OPTIONS)
        try:
            return self._compiled(x, z, action)
        except Exception as e:  # noqa: BLE001 - no compiler toolchain etc.: eager from then on
            self.notes.append(f"torch.compile failed ({str(e).strip().splitlines()[0][:200]}); using torch eager")
            self.backend = "torch"
            return None


def predictor(G: torch.nn.Module, backend: str = "auto", precision: str = "auto", *,
              checkpoint: str | Path | None = None, exporter: str = "auto",
              spin: bool = True) -> Predictor:
    """A ``Predictor`` for ``G`` (already on its device; see ``prepare``). ``checkpoint``: where
    G came from, so the ONNX export is cached beside it. ``spin``: see ``Predictor.spin`` (off
    where the cores are shared, as in play). Raises ``BackendError`` for a
    combination that cannot run; a backend whose package is missing falls back to torch with a
    note in ``notes``."""
    if isinstance(G, Predictor):
        return G
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (use {', '.join(BACKENDS)})")
    p = getattr(precision, "value", precision)
    device = next(G.parameters()).device
    if backend == "onnx" and p == "bf16":
        raise BackendError("the onnx backend runs fp32 only (use --precision fp32 or auto, or another backend)")
    if backend == "onnx" and device.type != "cpu":
        raise BackendError(f"the onnx backend runs on the CPU; G is on {device} (use --device cpu)")
    return Predictor(G, backend, p, checkpoint, exporter, spin=spin)


# ----------------------------------------------------------------------------- the loop
def check_actions(actions, num_actions: int, batch: int, horizon: int, device) -> torch.Tensor | None:
    """``actions`` ``(B, >= T)`` indices into the model's action set -> int64 ``(B, T)`` on
    ``device``; None for a model without actions (whatever was passed)."""
    if num_actions == 0:
        return None
    if actions is None:
        raise ValueError(f"this model takes actions ({num_actions} of them): pass one per predicted step")
    a = torch.as_tensor(actions).to(device=device, dtype=torch.int64)
    if a.ndim != 2 or a.shape[0] != batch or a.shape[1] < horizon:
        raise ValueError(f"actions must have shape ({batch}, >= {horizon}), got {tuple(a.shape)}")
    a = a[:, :horizon]
    if a.numel() and (a.min() < 0 or a.max() >= num_actions):
        raise ValueError(f"action indices must be in [0, {num_actions}), got {a.min().item()}..{a.max().item()}")
    return a


def systematic_draw(probs: torch.Tensor, samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(B, S)`` class indices for S samples per row of ``probs`` ``(B, C)``, by systematic
    sampling: the quantiles ``(s + u) / S`` of one uniform offset u per row. Each sample's class
    alone is distributed as ``probs`` (so a mean over the samples is an unbiased estimate under the
    model's own odds), but together they cover the classes in proportion: at a fork with odds near
    1/2 two of four samples take each side, where four independent draws all took one side one
    time in eight and best-of-4 missed the other branch."""
    u = torch.rand(probs.shape[0], 1, device=probs.device, generator=generator)
    quantiles = (torch.arange(samples, device=probs.device) + u) / samples
    cdf = probs.cumsum(dim=1)
    classes = torch.searchsorted(cdf, quantiles.contiguous()).clamp(max=probs.shape[1] - 1)
    # In a random order: sample s is then not always the lower quantile (the rarer class).
    order = torch.rand(classes.shape, device=probs.device, generator=generator).argsort(dim=1)
    return classes.gather(1, order)


def autoregress(predict: Predictor, context: torch.Tensor, horizon: int, samples: int = 1,
                generator: torch.Generator | None = None, actions=None,
                z: torch.Tensor | None = None, history=None, prior=None) -> torch.Tensor:
    """Contexts ``(B, K', C, H, W)`` (K' >= K; the last K are used) -> futures ``(B, S, T, C, H, W)``
    float32 in [-1, 1] on G's device. Each of the S samples keeps one z (from ``generator``) for
    its whole future; the prediction is appended to the window and fed back, T times. With
    discrete noise classes and at least as many samples as classes, sample s takes class s mod C
    (stratified: S samples show every future the model knows, in equal shares, instead of maybe
    one class S times); the continuous part stays random. ``actions``
    ``(B, T)``: the action index for predicted step t is ``actions[:, t]`` (shared by the S
    samples); required when the model has actions, ignored otherwise. A model with a key history
    of L (``model.action_history``) also sees the L-1 keys before each step's: ``history`` ``(B,
    >= L-1)`` are the keys pressed after the context frames before the last (the last L-1 used);
    without it the first step's key is taken to have been held. ``prior``: a function of the
    contexts ``(B, K, C, H, W)`` -> class logits ``(B, C)`` (the inverse model's ``prior``): each
    sample's class is drawn from it (``systematic_draw``) instead of cycled. ``z`` ``(B*S, z_dim)``,
    rows ordered batch-major (row ``b*S + s`` is sample s of context b): this noise instead of
    drawing it (e.g. a fixed noise class); ignored when the model takes no noise."""
    K = predict.context
    if context.shape[1] < K:
        raise ValueError(f"context has {context.shape[1]} frames, the model needs {K}")
    if horizon < 1 or samples < 1:
        raise ValueError(f"horizon and samples must be >= 1, got {horizon} and {samples}")
    device = predict.device
    a = check_actions(actions, predict.num_actions, context.shape[0], horizon, device)
    L = predict.action_history
    if a is not None and L > 1:
        if history is None:
            before = repeat(a[:, :1], "b 1 -> b l", l=L - 1)
        else:
            before = torch.as_tensor(history).to(device=device, dtype=torch.int64)
            if before.ndim != 2 or before.shape[0] != a.shape[0] or before.shape[1] < L - 1:
                raise ValueError(f"history must have shape ({a.shape[0]}, >= {L - 1}), got {tuple(before.shape)}")
            before = check_actions(before[:, -(L - 1):], predict.num_actions, a.shape[0], L - 1, device)
        a = torch.cat([before, a], dim=1)  # (B, L-1+T): step t plays a[:, t:t+L]
    if a is not None:
        a = repeat(a, "b t -> (b s) t", s=samples)
    # contiguous: repeat may return a stride-0 view, which would recompile a compiled G at step 2
    x = repeat(context[:, -K:].to(device, torch.float32), "b k c h w -> (b s) k c h w", s=samples).contiguous()
    if predict.z_dim == 0:
        z = None
    elif z is None:
        n_classes = getattr(predict.G, "z_classes", 0)
        classes = None
        if n_classes and prior is not None:
            with torch.no_grad():
                probs = torch.softmax(prior(context[:, -K:].to(device, torch.float32)).float(), dim=1)
            classes = rearrange(systematic_draw(probs, samples, generator), "b s -> (b s)")
        elif n_classes and samples >= n_classes:
            classes = repeat(torch.arange(samples, device=device) % n_classes, "s -> (b s)", b=context.shape[0])
        z = predict.sample_z(x.shape[0], device=device, generator=generator, classes=classes)
    elif tuple(z.shape) != (x.shape[0], predict.z_dim):
        raise ValueError(f"z must have shape ({x.shape[0]}, {predict.z_dim}), got {tuple(z.shape)}")
    else:
        z = z.to(device, torch.float32)
    future = []
    with predict.active(x.shape[0]):
        for t in range(horizon):
            y = predict(x, z, None if a is None else a[:, t] if L == 1 else a[:, t:t + L]).clamp(-1.0, 1.0)
            future.append(y)
            x = torch.cat([x[:, 1:], rearrange(y, "n c h w -> n 1 c h w")], dim=1)
    return rearrange(torch.stack(future, dim=1), "(b s) t c h w -> b s t c h w", s=samples)
