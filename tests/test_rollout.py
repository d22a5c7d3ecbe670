"""python -m framegan.rollout: formats, sampling, video contexts and one-line errors.

Tiny models (width 8, depth 2, K=2) on 16x16 frames keep every test to about a second.
"""
import io
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from framegan.checkpoint import save_checkpoint
from framegan.config import load_config, to_dict
from framegan.frames import to_model
from framegan.nets import build_generator
from framegan.rollout import BORDER, context_from_video, main, rollout
from framegan.store import StoreWriter, open_store
from framegan.video import write_video

K, SIZE, FPS = 2, 16, 10.0


def make_checkpoint(path: Path, z_dim: int = 4, size: int = SIZE, seed: int = 0) -> Path:
    """A real checkpoint of an untrained tiny G. output=direct: an untrained composite G is almost
    copy-last, which would hide whether z changes anything."""
    cfg = load_config(None, ["model.width=8", "model.depth=2", f"model.z_dim={z_dim}", "model.z_classes=0",
                             "model.output=direct", f"data.context={K}",
                             f"loss.variety_k={4 if z_dim else 1}"])  # best-of-k needs noise
    torch.manual_seed(seed)
    G = build_generator(cfg.model, cfg.data.context)
    weights = G.state_dict()
    store = {"size": [size, size], "crop": "none", "fps": FPS}
    save_checkpoint(path, {"step": 0, "config": to_dict(cfg), "G": weights, "G_ema": weights, "store": store})
    return path


def sliding_square(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 3): a bright square sliding right over a fixed dim texture."""
    rng = np.random.default_rng(seed)
    background = rng.integers(20, 60, (size, size, 3), dtype=np.uint8)
    frames = np.repeat(background[None], n, axis=0)
    s = max(2, size // 4)
    for i in range(n):
        x = (i * max(1, size // 16)) % (size - s)
        frames[i, size // 3:size // 3 + s, x:x + s] = (250, 200, 40)
    return frames


def write_store(path: Path, frames: np.ndarray, fps: float = FPS) -> Path:
    with StoreWriter(path, size=frames.shape[1:3], fps=fps) as w:
        for f in frames:
            w.add(f, source="test")
    return path


@pytest.fixture
def setup(tmp_path):
    ckpt = make_checkpoint(tmp_path / "run" / "last.pt")
    store = write_store(tmp_path / "store", sliding_square(12))
    return tmp_path, ckpt, store


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_rollout_function_samples_and_seed(tmp_path):
    from framegan.checkpoint import load_generator

    ctx = to_model(sliding_square(K))
    G, _, _ = load_generator(make_checkpoint(tmp_path / "z.pt", z_dim=4), "cpu")
    a = rollout(G, ctx, horizon=3, samples=3, seed=7, precision="fp32")
    assert a.shape == (3, 3, 3, SIZE, SIZE) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, rollout(G, ctx, 3, 3, seed=7, precision="fp32"))  # reproducible
    assert not torch.equal(a, rollout(G, ctx, 3, 3, seed=8, precision="fp32"))
    assert (a[0] - a[1]).abs().max() > 1e-3 and (a[1] - a[2]).abs().max() > 1e-3  # z matters
    G0, _, _ = load_generator(make_checkpoint(tmp_path / "det.pt", z_dim=0), "cpu")
    b = rollout(G0, ctx, 3, 3, seed=7, precision="fp32")
    assert torch.equal(b[0], b[1]) and torch.equal(b[1], b[2])
    # Autoregressive: step 2 is G applied to (context[-1], step 1), not to the context again.
    with torch.inference_mode():
        step2 = G0(torch.stack([ctx[-1], b[0, 0]])[None], None)[0]
    assert torch.allclose(step2, b[0, 1], atol=1e-5)
    # bf16 autocast (what "auto" picks on CPUs with bf16) stays close to fp32 and leaves a frozen
    # G (the trainer's G_ema) frozen afterwards
    G.requires_grad_(False)
    c = rollout(G, ctx, 3, 3, seed=7, precision="bf16")
    assert (c - a).abs().max() < 0.1 and not any(p.requires_grad for p in G.parameters())


def test_npy_shape_and_sample_diversity(setup, capsys):
    tmp, ckpt, store = setup
    out = tmp / "f.npy"
    code, stdout, _ = run_cli(["--checkpoint", ckpt, "--context", store, "--horizon", 5,
                               "--samples", 3, "--out", out], capsys)
    assert code == 0 and "frames/s" in stdout
    arr = np.load(out)
    assert arr.shape == (3, 5, SIZE, SIZE, 3) and arr.dtype == np.uint8
    assert not np.array_equal(arr[0], arr[1])
    det = make_checkpoint(tmp / "det.pt", z_dim=0)
    assert run_cli(["--checkpoint", det, "--context", store, "--horizon", 2, "--samples", 2,
                    "--out", tmp / "d.npy"], capsys)[0] == 0
    d = np.load(tmp / "d.npy")
    assert np.array_equal(d[0], d[1])
    # an upper-case suffix: np.save would have added ".npy" to the temp name, leaving the target empty
    assert run_cli(["--checkpoint", det, "--context", store, "--horizon", 2, "--samples", 2,
                    "--out", tmp / "UP.NPY"], capsys)[0] == 0
    assert np.array_equal(np.load(tmp / "UP.NPY"), d)
    assert not [p.name for p in tmp.iterdir() if p.name.startswith(".")]


def test_png_grid_layout(setup, capsys):
    tmp, ckpt, store = setup
    cell = SIZE * 2 + 2 * BORDER
    # --start inside the segment: truth known -> a truth row on top
    code, _, _ = run_cli(["--checkpoint", ckpt, "--context", store, "--start", 6, "--horizon", 3,
                          "--samples", 2, "--upscale", 2, "--out", tmp / "g.png"], capsys)
    assert code == 0
    img = np.asarray(Image.open(tmp / "g.png"))
    assert img.shape == ((1 + 2) * cell, (K + 3) * cell, 3)
    frames = open_store(store).segments[0]
    truth_cell = img[BORDER:BORDER + 2 * SIZE:2, K * cell + BORDER:K * cell + BORDER + 2 * SIZE:2]
    assert np.array_equal(truth_cell, frames[6])  # row 0, first future column = frame 6
    ctx_cell = img[cell + BORDER:cell + BORDER + 2 * SIZE:2, cell + BORDER:cell + BORDER + 2 * SIZE:2]
    assert np.array_equal(ctx_cell, frames[5])    # sample row, last context column = frame 5
    # default start = end of the segment: nothing known after it -> no truth row
    run_cli(["--checkpoint", ckpt, "--context", store, "--horizon", 3, "--samples", 2,
             "--upscale", 2, "--out", tmp / "h.png"], capsys)
    assert np.asarray(Image.open(tmp / "h.png")).shape == (2 * cell, (K + 3) * cell, 3)


def test_mp4_and_gif_frame_counts(setup, capsys):
    tmp, ckpt, store = setup
    cell = SIZE * 3 + 2 * BORDER
    for name in ("v.mp4", "v.gif"):
        code, _, _ = run_cli(["--checkpoint", ckpt, "--context", store, "--start", 5, "--horizon", 4,
                              "--samples", 2, "--upscale", 3, "--fps", 10, "--out", tmp / name], capsys)
        assert code == 0
    with av.open(str(tmp / "v.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == K + 4
    assert frames[0].shape == (cell, 3 * cell, 3)  # truth + 2 samples side by side
    # prediction marker: the first K frames have grey borders, the rest red ones on the samples
    assert frames[0][0, cell + cell // 2, 0] < 160 and frames[-1][0, cell + cell // 2, 0] > 180
    gif = Image.open(tmp / "v.gif")
    assert gif.size == (3 * cell, cell)
    # Pillow merges identical consecutive frames, so count time, not frames: (K + T) x 100 ms
    durations = []
    for i in range(gif.n_frames):
        gif.seek(i)
        durations.append(gif.info["duration"])
    assert sum(durations) == (K + 4) * 100


def test_default_out_is_mp4_next_to_checkpoint(setup, capsys):
    _, ckpt, store = setup
    code, stdout, _ = run_cli(["--checkpoint", ckpt, "--context", store, "--horizon", 2,
                               "--samples", 1], capsys)
    assert code == 0 and (ckpt.parent / "rollout.mp4").stat().st_size > 0
    assert "frames/s" in stdout


def test_video_context_is_preprocessed_like_the_store(tmp_path, capsys):
    from framegan.extract import extract

    big = sliding_square(10, size=32, seed=3)  # the "original" video is 32x32
    video = tmp_path / "clip.mp4"
    write_video(video, big, fps=FPS)
    store = tmp_path / "store"
    extract([video], store, size=SIZE, progress=False)
    frames = open_store(store).segments[0]
    info = {"size": [SIZE, SIZE], "crop": "none", "fps": FPS}
    ctx, truth, fps = context_from_video(video, info, K, horizon=3, start=5)
    assert ctx.shape == (K, SIZE, SIZE, 3) and fps == FPS
    assert np.array_equal(ctx, frames[5 - K:5]) and np.array_equal(truth, frames[5:8])
    ctx_end, truth_end, _ = context_from_video(video, info, K, horizon=3, start=None)
    assert np.array_equal(ctx_end, frames[-K:]) and len(truth_end) == 0
    # and through the CLI: the grid's last context cell is the store's frame 4
    ckpt = make_checkpoint(tmp_path / "c.pt")
    assert run_cli(["--checkpoint", ckpt, "--context", video, "--start", 5, "--horizon", 2,
                    "--samples", 1, "--upscale", 1, "--out", tmp_path / "g.png"], capsys)[0] == 0
    img = np.asarray(Image.open(tmp_path / "g.png"))
    c = SIZE + 2 * BORDER
    assert np.array_equal(img[c + BORDER:c + BORDER + SIZE, c + BORDER:c + BORDER + SIZE], frames[4])


class _Exploit:
    """A checkpoint that runs code when unpickled (if anything unpickles it unsafely)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_classes_from_the_prior(setup, capsys):
    """--classes prior draws each sample's class from the run's class prior: one that always says
    class 1 gives 4 identical samples, where cycling shows both classes."""
    from framegan.nets.inverse import InverseModel

    tmp, _, store = setup
    cfg = load_config(None, ["model.width=8", "model.depth=2", "model.z_dim=0", "model.z_classes=2",
                             "model.output=direct", f"data.context={K}", "loss.variety_k=2"])
    torch.manual_seed(0)
    G = build_generator(cfg.model, K)
    Q = InverseModel(K, 2)
    with torch.no_grad():
        Q.prior_head.weight.zero_()
        Q.prior_head.bias.copy_(torch.tensor([-30.0, 30.0]))
    info = {"size": [SIZE, SIZE], "crop": "none", "fps": FPS}
    ckpt = tmp / "latent.pt"
    save_checkpoint(ckpt, {"step": 0, "config": to_dict(cfg), "G": G.state_dict(), "G_ema": G.state_dict(),
                           "Q": Q.state_dict(), "store": info})
    common = ["--checkpoint", ckpt, "--context", store, "--horizon", 2, "--samples", 4]
    assert run_cli([*common, "--classes", "prior", "--out", tmp / "p.npy"], capsys)[0] == 0
    assert run_cli([*common, "--out", tmp / "c.npy"], capsys)[0] == 0
    p, c = np.load(tmp / "p.npy"), np.load(tmp / "c.npy")
    assert all(np.array_equal(p[0], p[i]) for i in range(4)) and np.array_equal(p[0], c[1])
    assert not np.array_equal(c[0], c[1])


@pytest.mark.parametrize("case", ["missing-checkpoint", "horizon-0", "short-context", "other-size",
                                  "pickled-code", "unknown-suffix", "missing-context", "no-prior"])
def test_bad_inputs_one_line_error(setup, capsys, case):
    tmp, ckpt, store = setup
    out = tmp / "o.npy"
    args = {"--checkpoint": ckpt, "--context": store, "--horizon": 2, "--out": out}
    if case == "missing-checkpoint":
        args["--checkpoint"] = tmp / "nope.pt"
    elif case == "horizon-0":
        args["--horizon"] = 0
    elif case == "short-context":
        args["--start"] = K - 1
    elif case == "other-size":
        args["--context"] = write_store(tmp / "big", sliding_square(6, size=32))
    elif case == "pickled-code":
        bad = io.BytesIO()
        torch.save({"format": "framegan-checkpoint", "x": _Exploit(str(tmp / "pwned"))}, bad)
        (tmp / "evil.pt").write_bytes(bad.getvalue())
        args["--checkpoint"] = tmp / "evil.pt"
    elif case == "unknown-suffix":
        args["--out"] = out = tmp / "o.avi"
    elif case == "missing-context":
        args["--context"] = tmp / "nothing.mp4"
    elif case == "no-prior":  # a model without noise classes has no class prior to draw from
        args["--classes"] = "prior"
    code, _, err = run_cli([x for kv in args.items() for x in kv], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not out.exists() and not any(p.name.startswith(".o.") for p in tmp.iterdir())
    assert not (tmp / "pwned").exists()


def test_a_failed_write_names_the_out_not_the_temp_file(setup, capsys, monkeypatch):
    """A full disk while writing the hidden temp file beside --out: the one line names --out (the
    path the user gave), and neither file is left behind."""
    import errno

    tmp, ckpt, store = setup
    out = tmp / "o.npy"

    def full(f, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f.name)

    monkeypatch.setattr(np, "save", full)
    code, _, err = run_cli(["--checkpoint", ckpt, "--context", store, "--horizon", 2, "--out", out], capsys)
    assert code == 2 and err == f"error: {out}: {os.strerror(errno.ENOSPC)}\n"
    assert not out.exists() and not any(p.name.startswith(".o.") for p in tmp.iterdir())
