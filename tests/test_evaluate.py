"""framegan.evaluate: perfect predictors score inf/1, pooling and best-of-S, the CLI's files and errors."""
import copy
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from test_rollout import SIZE, K, make_checkpoint, sliding_square, write_store

from framegan.checkpoint import load_generator
from framegan.data import ClipDataset
from framegan.evaluate import COPY_LAST, evaluate_models, main, plot, summarise

T = 3


class Oracle(torch.nn.Module):
    """A 'generator' that is exactly right on a clip that scrolls one pixel right per frame."""

    context, z_dim = K, 0

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # rollout reads the device from parameters

    def forward(self, x, z=None):
        return torch.roll(x[:, -1], shifts=1, dims=-1)


def scrolling(n: int) -> np.ndarray:
    first = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    return np.stack([np.roll(first, i, axis=1) for i in range(n)])


def test_perfect_predictor_is_inf_and_one(tmp_path):
    ds = ClipDataset(write_store(tmp_path / "s", scrolling(10)), context=K, horizon=T, split="all")
    r = evaluate_models({"oracle": Oracle(), COPY_LAST: None}, ds, T, samples=2, progress=False)
    oracle, copy = r["models"]["oracle"], r["models"][COPY_LAST]
    assert r["windows"] == 10 - K - T + 1 and oracle["samples"] == 1
    for key in ("psnr", "sharpness", "psnr_moving", "sharpness_moving"):
        assert all(math.isinf(v) and v > 0 for v in oracle[key]["mean"]["steps"]), key
        assert math.isinf(oracle[key]["best"]["all"])
    for key in ("ssim", "ssim_moving"):
        assert oracle[key]["mean"]["steps"] == pytest.approx([1.0] * T, abs=1e-6)
    assert all(f > 0.9 for f in r["moving_fraction"])  # a scrolling random texture: nearly all moves
    assert all(math.isfinite(v) and v < 30 for v in copy["psnr"]["mean"]["steps"])
    assert oracle["diversity"]["steps"] == [0.0] * T


def test_copy_last_of_a_static_clip_is_perfect(tmp_path):
    still = np.repeat(scrolling(1), 8, axis=0)
    ds = ClipDataset(write_store(tmp_path / "s", still), context=K, horizon=T, split="all")
    r = evaluate_models({COPY_LAST: None}, ds, T, progress=False)
    copy = r["models"][COPY_LAST]
    assert all(math.isinf(v) for v in copy["psnr"]["mean"]["steps"])
    assert copy["ssim"]["mean"]["steps"] == pytest.approx([1.0] * T, abs=1e-6)
    assert r["moving_fraction"] == [0.0] * T  # the moving-area mask is empty ...
    assert all(math.isnan(v) for v in copy["psnr_moving"]["mean"]["steps"])  # ... so no moving score


def test_mean_vs_best_of_samples_and_determinism(tmp_path):
    ds = ClipDataset(write_store(tmp_path / "s", sliding_square(12)), context=K, horizon=T, split="all")
    G, _, _ = load_generator(make_checkpoint(tmp_path / "z.pt", z_dim=4), "cpu")
    G0, _, _ = load_generator(make_checkpoint(tmp_path / "d.pt", z_dim=0), "cpu")
    models = {"gan": G, "det": G0, COPY_LAST: None}
    a = evaluate_models(models, ds, T, samples=3, seed=5, max_windows=4, progress=False)
    assert a == evaluate_models(models, ds, T, samples=3, seed=5, max_windows=4, progress=False)
    assert a["windows"] == 4
    gan = a["models"]["gan"]
    assert gan["samples"] == 3 and a["models"]["det"]["samples"] == 1
    assert gan["psnr"]["best"]["all"] > gan["psnr"]["mean"]["all"] + 1e-4  # samples really differ
    assert gan["diversity"]["all"] > 0 and a["models"]["det"]["diversity"]["all"] == 0
    b = evaluate_models(models, ds, T, samples=3, seed=6, max_windows=4, progress=False)
    assert b["models"]["gan"]["psnr"] != gan["psnr"] and b["models"]["det"] == a["models"]["det"]


def test_best_of_samples_keeps_one_sample_for_the_whole_horizon():
    """Best-of-S: per window, the sample whose horizon-pooled value is best, kept for every step
    (SAVP), not the best frame of each step; mean-of-S pools all samples. The moving-area
    variant weighs each frame by its moving pixels (a step without motion counts for nothing).
    Values worked out by hand; (N=2 windows, S=2 samples, T=2 steps)."""
    mse = np.array([[[1e-4, 1e-1], [1e-2, 1e-2]],    # window 0: sample 0 exact then awful, 1 steady
                    [[4e-2, 4e-2], [1e-3, 1e-1]]])   # window 1: sample 0 steady, 1 exact then awful
    ssim = np.array([[[0.9, 0.1], [0.6, 0.6]],
                     [[0.2, 0.9], [0.5, 0.5]]])
    mse_moving = mse.copy()
    mse_moving[1, :, 0] = np.nan                      # window 1 has no moving pixel at step 1
    n_moving = np.array([[1.0, 3.0], [0.0, 2.0]])
    r = summarise({"psnr": mse, "ssim": ssim, "psnr_moving": mse_moving}, n_moving, np.zeros((2, 2)))
    db = lambda e: 10 * math.log10(1 / e)  # noqa: E731
    # psnr: window 0 keeps sample 1 (pooled 0.01 < 0.05005), window 1 sample 0 (0.04 < 0.0505)
    assert r["psnr"]["best"]["steps"] == pytest.approx([db(0.025), db(0.025)])
    assert r["psnr"]["mean"]["steps"] == pytest.approx([db((0.00505 + 0.0205) / 2), db((0.055 + 0.07) / 2)])
    # ssim, higher is better: window 0 keeps sample 1 (0.6 > 0.5), window 1 sample 0 (0.55 > 0.5)
    assert r["ssim"]["best"]["steps"] == pytest.approx([0.4, 0.75])
    assert r["ssim"]["best"]["all"] == pytest.approx(0.575)
    # moving area: window 0 pools (1e-4 + 3 * 0.1) / 4 vs 0.01 -> sample 1; window 1 -> sample 0
    assert r["psnr_moving"]["best"]["steps"] == pytest.approx([db(0.01), db((3 * 0.01 + 2 * 0.04) / 5)])
    assert r["psnr_moving"]["best"]["all"] == pytest.approx(db((0.01 + 3 * 0.01 + 2 * 0.04) / 6))


def test_plot_draws_the_results(tmp_path):
    """metrics.png is a picture of the numbers: the same results draw the same pixels, and
    changing one model's curve changes them."""
    ds = ClipDataset(write_store(tmp_path / "s", sliding_square(12)), context=K, horizon=T, split="all")
    G0, _, _ = load_generator(make_checkpoint(tmp_path / "d.pt", z_dim=0), "cpu")
    r = evaluate_models({"det": G0, COPY_LAST: None}, ds, T, max_windows=4, progress=False)
    pixels = []
    for i, psnr in enumerate((None, None, [v - 3.0 for v in r["models"]["det"]["psnr"]["mean"]["steps"]])):
        results = copy.deepcopy(r)
        if psnr is not None:
            results["models"]["det"]["psnr"]["mean"]["steps"] = psnr
        plot(tmp_path / f"{i}.png", results)
        pixels.append(np.asarray(Image.open(tmp_path / f"{i}.png").convert("RGB")))
    assert np.array_equal(pixels[0], pixels[1])
    assert pixels[2].shape == pixels[0].shape and not np.array_equal(pixels[2], pixels[0])
    assert len(np.unique(pixels[0].reshape(-1, 3), axis=0)) > 3  # more than axes on a background


def test_cli_writes_json_plot_and_table(tmp_path, capsys):
    store = write_store(tmp_path / "s", sliding_square(12))
    ckpt = make_checkpoint(tmp_path / "run" / "gan.pt", z_dim=4)
    base = make_checkpoint(tmp_path / "reg" / "regression.pt", z_dim=0)
    out = tmp_path / "eval"
    code = main(["--checkpoint", str(ckpt), "--data", str(store), "--split", "all", "--horizon", str(T),
                 "--samples", "2", "--baseline", str(base), "--baseline", str(base), "--max-windows", "5",
                 "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    r = json.loads((out / "metrics.json").read_text())
    assert list(r["models"]) == ["gan", "regression", "regression#2", COPY_LAST]
    assert r["models"]["regression"]["psnr"] == r["models"]["regression#2"]["psnr"]
    assert r["windows"] == 5 and r["horizon"] == T and r["split"] == "all"
    assert len(r["models"]["gan"]["ssim_moving"]["best"]["steps"]) == T
    assert Image.open(out / "metrics.png").format == "PNG"
    assert "gan (best of 2)" in stdout and "regression" in stdout and COPY_LAST in stdout
    assert "FVD and LPIPS skipped" in stdout and "frames/s" not in stdout


def test_models_in_run_directories_are_named_after_the_run(tmp_path, capsys):
    store = write_store(tmp_path / "s", sliding_square(12))
    gan = make_checkpoint(tmp_path / "runs" / "pacman" / "checkpoints" / "last.pt", z_dim=4)
    reg = make_checkpoint(tmp_path / "runs" / "pacman_regression" / "checkpoints" / "last.pt", z_dim=0)
    assert main(["--checkpoint", str(gan), "--data", str(store), "--split", "all", "--horizon", "2",
                 "--samples", "2", "--baseline", str(reg), "--max-windows", "2", "--out", str(tmp_path / "e")]) == 0
    r = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert list(r["models"]) == ["pacman", "pacman_regression", COPY_LAST]


def test_without_data_scores_the_store_the_checkpoint_trained_on(tmp_path, capsys):
    from framegan.checkpoint import load_checkpoint, save_checkpoint

    store = write_store(tmp_path / "s", sliding_square(12))
    ckpt = make_checkpoint(tmp_path / "runs" / "r" / "checkpoints" / "last.pt", z_dim=0)
    state = load_checkpoint(ckpt)
    state["config"]["data"]["root"] = str(store)
    save_checkpoint(ckpt, state)
    argv = ["--checkpoint", str(ckpt), "--split", "all", "--horizon", "2", "--max-windows", "3"]
    assert main([*argv, "--out", str(tmp_path / "e")]) == 0
    assert f"data: {store}" in capsys.readouterr().out
    r = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert r["data"] == str(store) and r["windows"] == 3
    state["config"]["data"]["root"] = str(tmp_path / "gone")  # trained elsewhere: say so, one line
    save_checkpoint(ckpt, state)
    assert main([*argv, "--out", str(tmp_path / "e2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --data" in err[0] and not (tmp_path / "e2").exists()


@pytest.mark.parametrize("case", ["missing-checkpoint", "missing-store", "horizon-0", "other-size",
                                  "no-val-windows"])
def test_cli_errors_are_one_line(tmp_path, capsys, case):
    store = write_store(tmp_path / "s", sliding_square(12))
    args = {"--checkpoint": make_checkpoint(tmp_path / "c.pt"), "--data": store, "--split": "all",
            "--horizon": T, "--out": tmp_path / "eval"}
    if case == "missing-checkpoint":
        args["--checkpoint"] = tmp_path / "none.pt"
    elif case == "missing-store":
        args["--data"] = tmp_path / "nothing"
    elif case == "horizon-0":
        args["--horizon"] = 0
    elif case == "other-size":
        args["--data"] = write_store(tmp_path / "big", sliding_square(12, size=32))
    elif case == "no-val-windows":
        args["--split"], args["--horizon"] = "val", 20  # 12 frames cannot hold K + 20
    code = main([str(x) for kv in args.items() for x in kv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert not (tmp_path / "eval").exists()


# ----------------------------------------------------------------------------- high-frequency power ratio
class Blurry(Oracle):
    """The oracle's frame under a Gaussian blur (sigma 1.5 px): in the right place, without detail.
    With ``z_dim=1`` the samples alternate exact (z = 1) and blurred (z = 0), so best-of-S knows
    which sample to keep."""

    def __init__(self, z_dim: int = 0):
        super().__init__()
        self.z_dim = z_dim

    def sample_z(self, n, device=None, generator=None, classes=None):
        return (torch.arange(n, device=device) % 2).float()[:, None]

    def forward(self, x, z=None):
        from torchvision.transforms.v2.functional import gaussian_blur

        exact = super().forward(x)
        blurred = gaussian_blur(exact, [7, 7], [1.5, 1.5])
        return blurred if z is None else torch.where(z[:, :, None, None] > 0, exact, blurred)


def test_hf_ratio_in_results(tmp_path):
    ds = ClipDataset(write_store(tmp_path / "s", scrolling(10)), context=K, horizon=T, split="all")
    models = {"oracle": Oracle(), "blurry": Blurry(), "mixed": Blurry(z_dim=1), COPY_LAST: None}
    r = evaluate_models(models, ds, T, samples=2, progress=False)
    assert r["hf_cutoff"] == pytest.approx(0.25)
    m = r["models"]
    for key in ("hf_ratio", "hf_ratio_moving"):
        assert m["oracle"][key]["mean"]["steps"] == pytest.approx([1.0] * T, abs=1e-6)
        blurry = m["blurry"][key]["mean"]["steps"]
        # fed back autoregressively, the blur compounds: step t is blurred t times
        assert all(v < 0.5 for v in blurry) and blurry == sorted(blurry, reverse=True), blurry
        assert m["blurry"][key]["best"] == m["blurry"][key]["mean"]  # one sample: nothing to pick
        # mean of S pools both samples' power; best of S is the sample best-of-S PSNR keeps (exact)
        mixed = m["mixed"][key]
        assert mixed["mean"]["steps"] == pytest.approx([(1 + b) / 2 for b in blurry], rel=1e-5)
        assert mixed["best"]["steps"] == pytest.approx([1.0] * T, abs=1e-6)
        assert mixed["best"]["all"] == pytest.approx(1.0, abs=1e-6)
        assert min(blurry) <= m["blurry"][key]["mean"]["all"] <= max(blurry)
        assert all(0.8 < v < 1.25 for v in m[COPY_LAST][key]["mean"]["steps"])  # a real, shifted frame


def test_cli_reports_hf_ratio_in_json_table_and_plot(tmp_path, capsys):
    from framegan.evaluate import PANELS, figure

    store = write_store(tmp_path / "s", sliding_square(12))
    ckpt = make_checkpoint(tmp_path / "run" / "gan.pt", z_dim=4)
    out = tmp_path / "eval"
    assert main(["--checkpoint", str(ckpt), "--data", str(store), "--split", "all", "--horizon", str(T),
                 "--samples", "2", "--max-windows", "4", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    r = json.loads((out / "metrics.json").read_text())
    for name in ("gan", COPY_LAST):
        for key in ("hf_ratio", "hf_ratio_moving"):
            for variant in ("mean", "best"):
                entry = r["models"][name][key][variant]
                assert len(entry["steps"]) == T and all(0 < v < 10 for v in [*entry["steps"], entry["all"]])
    assert "high-frequency power ratio (1 = as detailed as the truth), moving area" in stdout
    assert "gan (best-PSNR of 2)" in stdout
    png = Image.open(out / "metrics.png")
    assert png.format == "PNG" and png.size == (1700, 700)
    fig = figure(r)  # the JSON as written ("inf" strings, nulls) draws too
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(PANELS) == 5 and len(panels) == 2 * 5 - 1  # every metric twice, diversity once
    hf_panels = [ax for ax in panels if ax.get_title().startswith("high-frequency")]
    assert len(hf_panels) == 2
    for ax in hf_panels:  # the reference line at 1, and one thick + one thin line for gan
        assert any(list(line.get_ydata()) == [1.0, 1.0] for line in ax.lines)
        assert sorted(line.get_linewidth() for line in ax.lines if line.get_color() == "C0") == [0.9, 2.2]


def test_classes_prior_draws_the_samples_from_the_runs_class_prior(tmp_path, capsys):
    """--classes prior: a prior that always says class 1 makes the 4 samples one future (no spread
    between them); cycled, both classes show. A run without a prior falls back to cycling."""
    from framegan.checkpoint import save_checkpoint
    from framegan.config import load_config, to_dict
    from framegan.nets import build_generator
    from framegan.nets.inverse import InverseModel

    store = write_store(tmp_path / "s", sliding_square(12))
    cfg = load_config(None, ["model.width=8", "model.depth=2", "model.z_dim=0", "model.z_classes=2",
                             "model.output=direct", f"data.context={K}", "loss.variety_k=2"])
    torch.manual_seed(0)
    G, Q = build_generator(cfg.model, K), InverseModel(K, 2)
    with torch.no_grad():
        Q.prior_head.weight.zero_()
        Q.prior_head.bias.copy_(torch.tensor([-30.0, 30.0]))
    state = {"step": 0, "config": to_dict(cfg), "G": G.state_dict(), "G_ema": G.state_dict(),
             "store": {"size": [SIZE, SIZE], "crop": "none", "fps": 10.0}}
    save_checkpoint(tmp_path / "latent.pt", {**state, "Q": Q.state_dict()})
    save_checkpoint(tmp_path / "plain.pt", state)
    spread = {}
    for ckpt, classes in (("latent", "prior"), ("latent", "cycle"), ("plain", "prior")):
        out = tmp_path / f"{ckpt}-{classes}"
        argv = ["--checkpoint", str(tmp_path / f"{ckpt}.pt"), "--data", str(store), "--split", "all",
                "--horizon", "2", "--max-windows", "3", "--classes", classes, "--out", str(out)]
        assert main(argv) == 0
        r = json.loads((out / "metrics.json").read_text())
        assert r["classes"] == classes
        spread[ckpt, classes] = r["models"][ckpt]["diversity"]["all"]
    assert spread["latent", "prior"] < 1e-6 < spread["latent", "cycle"]
    assert spread["plain", "prior"] == pytest.approx(spread["latent", "cycle"])  # no prior: cycled


def test_delta_se_is_zero_for_a_constant_gain_and_shrinks_with_more_windows():
    """delta_se: the paired bootstrap spread of pooled delta-PSNR. Keys that halve every window's
    error give 3.01 dB in every resample (no spread); a gain that varies between windows has a
    spread that falls as 1/sqrt(windows); one window that carries the whole gain gives a spread
    as large as the gain itself."""
    from framegan.evaluate import delta_se

    rng = np.random.default_rng(1)
    true = rng.uniform(0.01, 0.02, (200, 3))
    se, se_all = delta_se(true, 2 * true, np.ones_like(true))
    assert np.allclose(se, 0, atol=1e-9) and se_all < 1e-9

    def spread(n):
        t = rng.uniform(0.01, 0.02, (n, 3))
        return delta_se(t, t * rng.uniform(1.0, 3.0, (n, 3)), np.ones_like(t))[0].mean()

    ratio = spread(1600) / spread(100)
    assert 0.15 < ratio < 0.35, ratio  # 1/sqrt(16) = 0.25

    other = true.copy()
    other[7] *= 200  # one window where the wrong keys are far off
    se, _ = delta_se(true, other, np.ones_like(true))
    gain = 10 * np.log10(other.mean(0) / true.mean(0))
    assert (se > 0.5 * gain).all(), (se, gain)
    # pixel weights pool as PSNR does: a window without moving pixels counts for nothing
    w = np.ones_like(true)
    w[7] = 0
    assert delta_se(true, other, w)[0].max() < 1e-6



def _latent_checkpoint(path, context, actions=0, action_values=None):
    """A tiny latent-action run (2 classes, its inverse model q), with keys when ``actions``."""
    from framegan.checkpoint import save_checkpoint
    from framegan.config import load_config, to_dict
    from framegan.nets import build_generator
    from framegan.nets.inverse import InverseModel

    cfg = load_config(None, ["model.width=8", "model.depth=2", "model.z_dim=0", "model.z_classes=2",
                             "model.output=direct", f"data.context={context}", "loss.variety_k=2",
                             f"model.actions={actions}"])
    torch.manual_seed(0)
    G = build_generator(cfg.model, context)
    store = {"size": [SIZE, SIZE], "crop": "none", "fps": 10.0}
    if actions:
        store["actions"] = {"values": action_values, "names": [str(v) for v in action_values]}
    save_checkpoint(path, {"step": 0, "config": to_dict(cfg), "G": G.state_dict(), "G_ema": G.state_dict(),
                           "Q": InverseModel(context, 2).state_dict(), "store": store})
    return path


def test_latent_report_beside_a_baseline_with_a_longer_context(tmp_path, capsys):
    # The report gave q and G the dataset's whole context (the baseline's 6 frames): a traceback
    # after every rollout was done.
    store = write_store(tmp_path / "s", sliding_square(16))
    short = _latent_checkpoint(tmp_path / "short.pt", K)
    longer = make_checkpoint(tmp_path / "longer.pt")  # K frames too; now one with K + 2
    from framegan.checkpoint import load_checkpoint, save_checkpoint
    state = load_checkpoint(longer)
    from framegan.config import load_config, to_dict
    from framegan.nets import build_generator
    cfg = load_config(None, ["model.width=8", "model.depth=2", "model.z_dim=0", "model.z_classes=0",
                             "model.output=direct", f"data.context={K + 2}", "loss.variety_k=1"])
    G6 = build_generator(cfg.model, K + 2)
    save_checkpoint(longer, {**state, "config": to_dict(cfg), "G": G6.state_dict(), "G_ema": G6.state_dict()})
    out = tmp_path / "e"
    assert main(["--checkpoint", str(short), "--baseline", str(longer), "--data", str(store), "--split", "all",
                 "--horizon", "2", "--max-windows", "3", "--out", str(out)]) == 0, capsys.readouterr().err
    r = json.loads((out / "metrics.json").read_text())
    assert r["context"] == K + 2 and r["models"]["short"]["latent"]["steps"] == 3


def test_latent_report_plays_the_models_own_key_indices(tmp_path):
    # On a store with another action set than the model's (here 3 and 4 of the model's 0, 3, 4)
    # the report fed G the store's indices (0, 1: the model's keys 0 and 3) instead of the model's.
    from framegan.actions import index_map
    from framegan.checkpoint import checkpoint_config, generator_from_state, inverse_from_state, load_checkpoint
    from framegan.evaluate import latent_report
    from framegan.store import StoreWriter

    frames = sliding_square(16)
    with StoreWriter(tmp_path / "s", size=(SIZE, SIZE), fps=10, actions=True) as w:
        for i, f in enumerate(frames):
            w.add(f, source="test", action=3 if i % 3 else 4)
    path = _latent_checkpoint(tmp_path / "keys.pt", K, actions=3, action_values=[0, 3, 4])
    state = load_checkpoint(path)
    cfg = checkpoint_config(state, path)
    G, Q = generator_from_state(state, cfg, path), inverse_from_state(state, cfg, path)
    fed = []

    class Spy(torch.nn.Module):
        context, num_actions, action_history = G.context, G.num_actions, G.action_history

        def sample_z(self, *a, **k):
            return G.sample_z(*a, **k)

        def forward(self, x, z, a):
            fed.append(a.clone())
            return G(x, z, a)
    ds = ClipDataset(tmp_path / "s", context=K, horizon=1, split="all")
    keymap = index_map(ds.store.action_values, [0, 3, 4])
    assert keymap.tolist() == [1, 2]
    windows = [0, 4, 8]
    latent_report(Q, Spy(), ds, windows, action_map=keymap)
    recorded = ds.window_actions(windows)  # store indices
    expect = torch.as_tensor(keymap)[recorded[:, K - G.action_history:K]]
    assert fed and all(torch.equal(a, expect) for a in fed)
