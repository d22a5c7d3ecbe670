"""framegan.inference and framegan.export: ONNX parity, the export cache, backends agree, auto's
choices, actions in the loop, the export CLI.

Tiny generators (width 8, depth 2, K=2) on 16x16 frames; each variant is exported once per module
(the TorchScript exporter takes a fraction of a second on them).
"""
import json

import numpy as np
import pytest
import torch
from test_rollout import SIZE, K, make_checkpoint, sliding_square, write_store

from framegan import inference
from framegan.config import load_config
from framegan.frames import to_model
from framegan.inference import autoregress, predictor, prepare

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

# name -> (z_dim, actions, z_inject[, output]): with and without z, with and without actions; concat
# and add tile / project the condition with batch-dependent shapes, which a traced export must keep
# dynamic; the residual head (old checkpoints) needs the exporter's atanh rule, direct has no last frame
VARIANTS = {"z": (4, 0, "modulate"), "plain": (0, 0, "modulate"), "z+actions": (4, 3, "modulate"),
            "actions": (0, 3, "modulate"), "concat": (4, 3, "concat"), "add": (4, 0, "add"),
            "residual": (4, 3, "modulate", "residual"), "direct": (4, 0, "modulate", "direct"),
            "one key": (4, 3, "modulate", "composite", 0, 1),  # the others with actions see the last 2 keys
            "last frame only": (4, 3, "modulate", "composite", 0, 2, 1)}  # the others copy from every context frame


def tiny_g(z_dim: int, actions: int, inject: str = "modulate", output: str = "composite", seed: int = 0,
           history: int = 2, copy: int = -1):
    from framegan.nets import build_generator

    cfg = load_config(None, ["model.width=8", "model.depth=2", f"model.z_dim={z_dim}", "model.z_classes=0",
                             f"model.actions={actions}", f"model.action_history={history}",
                             f"model.z_inject={inject}", f"model.output={output}", f"data.context={K}",
                             f"model.copy_frames={copy}",
                             f"loss.variety_k={4 if z_dim else 1}"])
    torch.manual_seed(seed)
    return build_generator(cfg.model, K).eval()


def inputs(G, batch: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, K, 3, SIZE, SIZE, generator=gen) * 2 - 1
    z = G.sample_z(batch, generator=gen) if G.z_dim else None
    a = torch.randint(G.num_actions, G.action_shape(batch), generator=gen) if G.num_actions else None
    return x, z, a


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (G, predictor on the onnx backend, its checkpoint path): one export per variant."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, variant in VARIANTS.items():
        G = tiny_g(*variant)
        p = predictor(G, "onnx", "fp32", checkpoint=root / f"{name}.pt")
        p.warm((SIZE, SIZE))
        assert p.backend == "onnx" and p.notes and "exported" in p.notes[0], p.notes
        out[name] = (G, p, root / f"{name}.pt")
    return out


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_matches_torch(exported, name, batch):
    G, p, ckpt = exported[name]
    x, z, a = inputs(G, batch)
    with torch.no_grad():
        ref = G(x, z, a)
    out = p(x, z, a)
    assert out.shape == ref.shape == (batch, 3, SIZE, SIZE) and out.dtype == torch.float32
    assert (out - ref).abs().max() < 1e-3
    # the file beside the checkpoint declares exactly G's inputs, with a dynamic batch
    session = ort.InferenceSession(str(ckpt.with_suffix(".cache.onnx")), providers=["CPUExecutionProvider"])
    declared = {i.name: i.shape for i in session.get_inputs()}
    assert list(declared) == ["x"] + (["z"] if G.z_dim else []) + (["action"] if G.num_actions else [])
    assert declared["x"][1:] == [K, 3, SIZE, SIZE] and isinstance(declared["x"][0], str)


def test_actions_change_the_onnx_output(exported):
    for name in ("z+actions", "one key"):  # the last two keys, one key
        G, p, _ = exported[name]
        x, z, _ = inputs(G, 2)
        outs = [p(x, z, torch.full(G.action_shape(2), i)) for i in range(3)]
        assert (outs[0] - outs[1]).abs().max() > 1e-4 and (outs[1] - outs[2]).abs().max() > 1e-4
    G, p, _ = exported["z+actions"]
    x, z, _ = inputs(G, 2)
    older = torch.tensor([[1, 0], [1, 0]])  # the key before alone changes the frame too
    assert (p(x, z, older) - p(x, z, torch.zeros(2, 2, dtype=torch.long))).abs().max() > 1e-4


def test_cache_is_reused_and_invalidated_by_new_weights(exported, monkeypatch):
    G, _, ckpt = exported["z"]
    cached = ckpt.with_suffix(".cache.onnx")
    mtime = cached.stat().st_mtime_ns
    calls = []
    real = inference.export_onnx
    monkeypatch.setattr(inference, "export_onnx", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = predictor(G, "onnx", checkpoint=ckpt)
    again.warm((SIZE, SIZE))
    assert calls == [] and cached.stat().st_mtime_ns == mtime and not again.notes  # reused, no export
    meta = ort.InferenceSession(str(cached)).get_modelmeta().custom_metadata_map
    assert meta["framegan.key"] == inference.weights_key(G, (SIZE, SIZE))
    # new weights, same checkpoint path: exported again, and the output follows the new weights
    G2 = tiny_g(4, 0, seed=1)
    p2 = predictor(G2, "onnx", checkpoint=ckpt)
    x, z, _ = inputs(G2, 2)
    out = p2(x, z)
    assert calls == [1] and p2.notes and cached.stat().st_mtime_ns != mtime
    with torch.no_grad():
        assert (out - G2(x, z)).abs().max() < 1e-3
    # and the first G's export comes back (the cache holds one file per checkpoint)
    p3 = predictor(G, "onnx", checkpoint=ckpt)
    with torch.no_grad():
        assert (p3(x, z) - G(x, z)).abs().max() < 1e-3
    assert calls == [1, 1]


def test_auto_exporter_falls_back_to_dynamo(tmp_path, monkeypatch):
    """auto tries the TorchScript exporter, then the dynamo one. (The dynamo exporter itself took
    17-36 s per tiny G on the loaded test machine, so it is checked by hand, not here.)"""
    def broken(*args):
        raise RuntimeError("aten::something is not supported\nlong trace")

    calls = []
    real = inference.EXPORTERS["torchscript"]
    monkeypatch.setitem(inference.EXPORTERS, "torchscript", broken)
    monkeypatch.setitem(inference.EXPORTERS, "dynamo", lambda *a: calls.append(1) or real(*a))
    G = tiny_g(0, 0)
    assert inference.export_onnx(G, tmp_path / "g.onnx", (SIZE, SIZE)) == "dynamo" and calls == [1]
    monkeypatch.setitem(inference.EXPORTERS, "dynamo", broken)
    with pytest.raises(RuntimeError, match="torchscript: aten::something.*; dynamo: aten::something"):
        inference.export_onnx(G, tmp_path / "h.onnx", (SIZE, SIZE))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]


def test_unwritable_cache_directory_falls_back_to_a_temp_file(tmp_path, monkeypatch):
    monkeypatch.setattr(inference.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the checkpoint's directory should be")
    G = tiny_g(0, 0)
    p = predictor(G, "onnx", checkpoint=blocker / "last.pt")
    x, _, _ = inputs(G, 1)
    with torch.no_grad():
        assert (p(x) - G(x)).abs().max() < 1e-3
    assert p.backend == "onnx" and list((tmp_path / "tmp" / "framegan-onnx").glob("*.onnx"))


def test_missing_onnxruntime_falls_back_to_torch_with_a_note(monkeypatch):
    monkeypatch.setattr(inference, "onnx_available", lambda: "onnxruntime not installed")
    G = tiny_g(4, 0)
    p = predictor(G, "onnx", "fp32")
    x, z, _ = inputs(G, 2)
    with torch.no_grad():
        assert torch.equal(p(x, z), G(x, z))
    assert p.backend == "torch" and len(p.notes) == 1 and "onnxruntime not installed" in p.notes[0]


def test_backend_errors():
    G = tiny_g(0, 0)
    with pytest.raises(inference.BackendError, match="fp32 only"):
        predictor(G, "onnx", "bf16")
    with pytest.raises(inference.BackendError, match="unknown backend"):
        predictor(G, "tensorrt")


@pytest.mark.parametrize("native", [False, True])
def test_auto_never_picks_emulated_bf16(monkeypatch, native):
    from framegan import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(precision, "cpu_has_avx512", lambda: True)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    G = tiny_g(4, 0)
    for backend in ("auto", "torch", "compile"):
        p = predictor(G, backend, "auto")
        for batch in (1, 3, 32):
            want = "bf16" if native and p.backend_for(batch) != "onnx" else "fp32"
            assert p.precision_for(batch) == want, (backend, batch)
    auto, big = predictor(G, "auto", "auto"), inference.ONNX_MAX_BATCH_BF16 + 1
    assert auto.backend_for(1) == "onnx" and auto.backend_for(big) == ("torch" if native else "onnx")
    assert predictor(G, "auto", "fp32").backend_for(big) == "onnx"
    assert predictor(G, "auto", "bf16").backend_for(1) == "torch"  # onnx runs fp32 only


@pytest.mark.parametrize("precision_asked", ["auto", "fp32"])
def test_auto_on_an_avx2_cpu_hands_big_batches_to_torch_fp32(monkeypatch, precision_asked):
    """Without AVX-512 (the AMD EPYC of issue 13) oneDNN's fp32 convs beat ONNX Runtime from batch
    8 on; batch 1 (play, rollout --samples 1) stays on ONNX Runtime."""
    from framegan import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_avx512", lambda: False)
    p, edge = predictor(tiny_g(4, 0), "auto", precision_asked), inference.ONNX_MAX_BATCH_AVX2
    assert [p.backend_for(b) for b in (1, edge, edge + 1, 32)] == ["onnx", "onnx", "torch", "torch"]
    assert [p.precision_for(b) for b in (1, 32)] == ["fp32", "fp32"]


def test_auto_exports_an_fp32_graph_from_inside_bf16_autocast(tmp_path, monkeypatch):
    """auto on a native-bf16 CPU runs batch 1 on ONNX Runtime inside the loop's bf16 autocast
    context: the export must not trace the autocast casts into the graph."""
    from framegan import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    G = tiny_g(4, 0)
    p = predictor(G, "auto", "auto", checkpoint=tmp_path / "g.pt")
    ctx = torch.rand(1, K, 3, SIZE, SIZE) * 2 - 1
    out = autoregress(p, ctx, 3, generator=torch.Generator().manual_seed(0))
    ref = autoregress(predictor(G, "torch", "fp32"), ctx, 3, generator=torch.Generator().manual_seed(0))
    assert p.describe(1) == "onnx fp32" and len(p.notes) == 1 and "exported" in p.notes[0], p.notes
    assert (out - ref).abs().max() < 1e-3


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch, request):
    from framegan import precision

    def cpuinfo(text):
        monkeypatch.setattr(precision.Path, "read_text", lambda self: text)
        precision.cpu_flags.cache_clear()  # read once per process; each case is another CPU
        return precision.cpu_has_native_bf16()

    request.addfinalizer(precision.cpu_flags.cache_clear)  # later tests read the real CPU again

    assert not cpuinfo("flags\t\t: fpu avx2 avx512f avx512bw\nbugs\t\t: spectre_v1\n")  # AVX-512, no BF16
    assert not cpuinfo("flags\t\t: fpu avx2\nmodel name\t: avx512_bf16 lookalike\n")
    assert cpuinfo("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpuinfo("flags\t\t: fpu avx2 amx_bf16 amx_tile\n")
    cpuinfo("flags\t\t: fpu avx2 fma\n")
    assert not precision.cpu_has_avx512()
    cpuinfo("flags\t\t: fpu avx2 avx512f avx512bw\n")
    assert precision.cpu_has_avx512()
    # the line the benchmarks print: the model name and only the flags that decide speed
    cpuinfo("processor\t: 0\nmodel name\t: AMD EPYC 9B45\nflags\t\t: fpu avx2 fma avx512f avx512_bf16\n")
    line = precision.describe_cpu()
    assert line.startswith("AMD EPYC 9B45, ") and line.endswith("flags: avx2 avx512f avx512_bf16"), line
    cpuinfo("flags\t\t: fpu sse2\n")
    assert precision.describe_cpu().startswith("unknown CPU, ") and "none of avx2" in precision.describe_cpu()


def test_loop_feeds_back_and_takes_one_action_per_step():
    G = tiny_g(0, 3, history=1)
    ctx = torch.rand(2, K, 3, SIZE, SIZE) * 2 - 1
    actions = torch.tensor([[0, 2, 1], [1, 1, 0]])
    out = autoregress(predictor(G, "torch", "fp32"), ctx, 3, samples=1, actions=actions)[:, 0]
    with torch.no_grad():
        x = ctx
        for t in range(3):  # step t: G on the window so far, with actions[:, t]
            y = G(x, None, actions[:, t])
            assert torch.allclose(out[:, t], y, atol=1e-6), t
            x = torch.cat([x[:, 1:], y[:, None]], dim=1)
    # A G with a key history of 2 gets (the key before, the step's key) at every step; before
    # the first step, the recorded one (history) or, without it, the first key held.
    G2 = tiny_g(0, 3, history=2)
    before = torch.tensor([[2], [0]])
    for hist, first in ((before, before[:, 0]), (None, actions[:, 0])):
        out = autoregress(predictor(G2, "torch", "fp32"), ctx, 3, actions=actions, history=hist)[:, 0]
        keys = torch.cat([first[:, None], actions], dim=1)
        with torch.no_grad():
            x = ctx
            for t in range(3):
                y = G2(x, None, keys[:, t:t + 2])
                assert torch.allclose(out[:, t], y, atol=1e-6), (t, hist)
                x = torch.cat([x[:, 1:], y[:, None]], dim=1)
    with pytest.raises(ValueError, match="history must have shape"):
        autoregress(predictor(G2, "torch"), ctx, 3, actions=actions, history=before[0])
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        autoregress(predictor(G2, "torch"), ctx, 3, actions=actions, history=before + 3)
    with pytest.raises(ValueError, match="takes actions"):
        autoregress(predictor(G, "torch"), ctx, 3)
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        autoregress(predictor(G, "torch"), ctx, 2, actions=torch.tensor([[0, 3], [0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        autoregress(predictor(G, "torch"), ctx, 3, actions=actions[:, :2])


def test_loop_takes_explicit_noise_rows_batch_major():
    G = tiny_g(4, 0)
    p = predictor(G, "torch", "fp32")
    ctx = torch.rand(2, K, 3, SIZE, SIZE) * 2 - 1
    z = G.sample_z(6, generator=torch.Generator().manual_seed(4))  # B=2 contexts x S=3 samples
    out = autoregress(p, ctx, 2, samples=3, z=z)
    drawn = autoregress(p, ctx, 2, samples=3, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(out, drawn, atol=1e-6)  # the same rows as the generator's draw
    alone = autoregress(p, ctx[1:], 2, samples=1, z=z[4:5])  # row b*S + s: context 1, sample 1
    assert torch.allclose(out[1, 1], alone[0, 0], atol=1e-6)
    assert not torch.allclose(out[1, 1], out[1, 2], atol=1e-3)  # another row, another future
    with pytest.raises(ValueError, match=r"z must have shape \(6, 4\)"):
        autoregress(p, ctx, 2, samples=3, z=z[:5])


def test_rollout_is_the_same_through_every_backend(exported):
    """Same seed, same frames: torch fp32 (NCHW and channels_last) and onnx agree to 1e-3 over a
    4-step rollout with z and actions; bf16 stays within 0.1."""
    from framegan.rollout import rollout

    G, onnx_p, _ = exported["z+actions"]
    ctx = to_model(sliding_square(K))
    acts = torch.tensor([0, 1, 2, 1])
    ref = rollout(G, ctx, 4, samples=2, seed=3, precision="fp32", actions=acts)
    runs = {"torch+cl": predictor(prepare(tiny_g(4, 3), "cpu"), "torch", "fp32"), "onnx": onnx_p}
    for name, p in runs.items():
        out = rollout(p, ctx, 4, samples=2, seed=3, actions=acts)
        assert out.shape == ref.shape and (out - ref).abs().max() < 1e-3, name
        assert not [n for n in p.notes if "using torch" in n], (name, p.notes)
    bf16 = rollout(G, ctx, 4, samples=2, seed=3, precision="bf16", actions=acts)
    assert (bf16 - ref).abs().max() < 0.1


def test_onnx_loop_runs_torch_on_one_thread_and_restores_it(exported, monkeypatch):
    """Around ONNX Runtime calls torch runs single-threaded (its OpenMP threads would compete
    with ORT's for the cores), and the caller's thread count comes back afterwards, also after an
    error; the session keeps the thread count the predictor was made with. Torch backends keep
    the caller's count inside the loop."""
    _, p, _ = exported["z"]
    seen = []
    real_run = p._runner((SIZE, SIZE)).session.run
    monkeypatch.setattr(p._runner((SIZE, SIZE)).session, "run",
                        lambda *a, **k: (seen.append(torch.get_num_threads()), real_run(*a, **k))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        autoregress(p, to_model(sliding_square(K))[None], 3)
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), p.active():
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
        assert p.threads == before  # the count when the fixture made the predictor
        t = predictor(tiny_g(4, 0), "torch", "fp32")
        with t.active():
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_rollout_through_compile(monkeypatch):
    """The compile backend gives the torch frames. It runs torch.compile's graph capture with the
    "eager" backend here: inductor's code generation took minutes on the loaded 2-core test
    machine (benchmarks/rollout_speed.py runs the real one); even this costs seconds (dynamo's
    first use)."""
    from framegan.rollout import rollout

    monkeypatch.setattr(inference, "COMPILE_OPTIONS", {"backend": "eager"})
    G = tiny_g(4, 3)
    ctx, acts = to_model(sliding_square(K)), torch.tensor([2, 0, 1])
    ref = rollout(G, ctx, 3, samples=2, seed=3, precision="fp32", actions=acts)
    p = predictor(G, "compile", "fp32")
    assert (rollout(p, ctx, 3, samples=2, seed=3, actions=acts) - ref).abs().max() < 1e-3
    assert p.backend == "compile" and not p.notes


def test_rollout_cli_onnx_backend_exports_once(tmp_path, capsys):
    from framegan.rollout import main

    ckpt = make_checkpoint(tmp_path / "run" / "last.pt")
    store = write_store(tmp_path / "store", sliding_square(8))
    args = ["--checkpoint", ckpt, "--context", store, "--horizon", 3, "--samples", 2, "--backend", "onnx"]
    assert main([str(a) for a in [*args, "--out", tmp_path / "a.npy"]]) == 0
    first = capsys.readouterr().out
    assert "exported G to ONNX" in first and "onnx fp32" in first and ckpt.with_suffix(".cache.onnx").is_file()
    assert main([str(a) for a in [*args, "--out", tmp_path / "b.npy"]]) == 0
    assert "exported" not in capsys.readouterr().out
    torch_args = [a if a != "onnx" else "torch" for a in args] + ["--precision", "fp32"]
    assert main([str(a) for a in [*torch_args, "--out", tmp_path / "c.npy"]]) == 0
    a, c = np.load(tmp_path / "a.npy").astype(int), np.load(tmp_path / "c.npy").astype(int)
    assert np.abs(a - c).max() <= 1  # uint8: at most a rounding step apart
    code = main([str(x) for x in [*args, "--precision", "bf16", "--out", tmp_path / "d.npy"]])
    assert code == 2 and capsys.readouterr().err.count("\n") == 1


def test_export_cli(tmp_path, capsys):
    from framegan.checkpoint import load_generator
    from framegan.export import main

    ckpt = make_checkpoint(tmp_path / "last.pt", z_dim=4)
    out = tmp_path / "web" / "g.onnx"
    assert main(["--checkpoint", str(ckpt), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert f"wrote {out}" in stdout and "max |onnxruntime - torch|" in stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert (int(meta["framegan.context"]), int(meta["framegan.height"]), int(meta["framegan.z_dim"])) == (K, SIZE, 4)
    assert json.loads(meta["framegan.action_values"]) == [] and meta["framegan.z_dist"] == "gaussian"
    G, _, _ = load_generator(ckpt)
    x, z, _ = inputs(G, 3)
    with torch.no_grad():
        ref = G(x, z).numpy()
    assert np.abs(session.run(["frame"], {"x": x.numpy(), "z": z.numpy()})[0] - ref).max() < 1e-3
    assert [p.name for p in out.parent.iterdir()] == ["g.onnx"]  # atomic: no temp file left behind
    # the file is what --backend onnx reuses when it sits beside the checkpoint
    main(["--checkpoint", str(ckpt)])
    capsys.readouterr()
    p = predictor(G, "onnx", checkpoint=ckpt)
    p.warm((SIZE, SIZE))
    assert not p.notes


def test_the_cache_never_overwrites_an_export_of_another_size(tmp_path, capsys):
    """export --size H W writes <stem>.onnx, the export's default --out; a rollout at the training
    size needs another graph. It used to export that to the same path, replacing the user's file."""
    from framegan.export import main
    from framegan.rollout import main as rollout_main

    ckpt = make_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", z_dim=4)
    mine = ckpt.with_suffix(".onnx")
    assert main(["--checkpoint", str(ckpt), "--size", "8", "12"]) == 0 and mine.is_file()
    before = mine.read_bytes()
    store = write_store(tmp_path / "store", sliding_square(6))
    args = ["--checkpoint", ckpt, "--context", store, "--horizon", 2, "--samples", 2, "--backend", "onnx"]
    capsys.readouterr()
    assert rollout_main([str(a) for a in [*args, "--out", tmp_path / "r.npy"]]) == 0
    assert "exported G to ONNX in" in capsys.readouterr().out  # needed: the user's file is 8x12
    assert mine.read_bytes() == before  # the user's export is untouched...
    meta = ort.InferenceSession(str(mine)).get_modelmeta().custom_metadata_map
    assert (meta["framegan.height"], meta["framegan.width"]) == ("8", "12")
    cache = ort.InferenceSession(str(ckpt.with_suffix(".cache.onnx"))).get_modelmeta().custom_metadata_map
    assert (cache["framegan.height"], cache["framegan.width"]) == (str(SIZE), str(SIZE))  # ...the cache has its own
    assert rollout_main([str(a) for a in [*args, "--out", tmp_path / "s.npy"]]) == 0
    assert "exported" not in capsys.readouterr().out and mine.read_bytes() == before  # reused, still untouched
    assert np.array_equal(np.load(tmp_path / "r.npy"), np.load(tmp_path / "s.npy"))


def test_export_cli_writes_the_store_actions(tmp_path, capsys):
    """The action ids and names come from the checkpoint's store info (where train.py keeps them)."""
    from framegan.checkpoint import save_checkpoint
    from framegan.config import to_dict
    from framegan.export import main

    G = tiny_g(4, 3)
    cfg = load_config(None, ["model.width=8", "model.depth=2", "model.z_dim=4", "model.z_classes=0",
                             "model.actions=3", f"data.context={K}", "loss.variety_k=4"])
    actions = {"values": [0, 3, 4], "names": ["NOOP", "RIGHT", "LEFT"]}
    store = {"size": [SIZE, SIZE], "crop": "none", "fps": 10.0, "actions": actions}
    ckpt = tmp_path / "last.pt"
    save_checkpoint(ckpt, {"step": 0, "config": to_dict(cfg), "G": G.state_dict(), "G_ema": G.state_dict(),
                           "store": store})
    out = tmp_path / "g.onnx"
    assert main(["--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert "action [batch, 2] int64 in [0, 3)" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["framegan.num_actions"] == "3" and meta["framegan.fps"] == "10.0"
    assert json.loads(meta["framegan.action_values"]) == [0, 3, 4]
    assert json.loads(meta["framegan.action_names"]) == ["NOOP", "RIGHT", "LEFT"]
    x, z, a = inputs(G, 3)
    with torch.no_grad():
        ref = G(x, z, a).numpy()
    got = session.run(["frame"], {"x": x.numpy(), "z": z.numpy(), "action": a.numpy()})[0]
    assert np.abs(got - ref).max() < 1e-3


@pytest.mark.parametrize("case", ["missing-checkpoint", "bad-suffix", "bad-size", "no-onnx", "unwritable-out",
                                  "onnxruntime-fails", "bad-option"])
def test_export_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, case):
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    from framegan import export

    ckpt = make_checkpoint(tmp_path / "last.pt")
    args = {"missing-checkpoint": ["--checkpoint", str(tmp_path / "nope.pt")],
            "bad-suffix": ["--checkpoint", str(ckpt), "--out", str(tmp_path / "g.txt")],
            "bad-size": ["--checkpoint", str(ckpt), "--size", "15", "16"],
            "no-onnx": ["--checkpoint", str(ckpt)],
            "unwritable-out": ["--checkpoint", str(ckpt), "--out", str(ckpt / "g.onnx")],  # under a file
            "onnxruntime-fails": ["--checkpoint", str(ckpt)],
            "bad-option": ["--checkpoint", str(ckpt), "--size", "x", "16"]}[case]
    if case == "no-onnx":
        monkeypatch.setattr(export, "onnx_available", lambda: "onnxruntime not installed")
    if case == "onnxruntime-fails":
        def fail(*a, **k):
            raise Fail("[ONNXRuntimeError] : 1 : FAIL : Load model failed\nsecond line")
        monkeypatch.setattr(ort, "InferenceSession", fail)
    assert export.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not list(tmp_path.glob("*.onnx"))


def test_samples_cover_the_noise_classes_in_equal_shares():
    """S >= C samples of a model with discrete noise take class s mod C (stratified); fewer
    samples than classes draw the class at random."""
    seen = []

    class Recorder(torch.nn.Module):
        context, channels, z_dim, z_classes, num_actions = 2, 3, 3, 3, 0

        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def sample_z(self, n, device=None, generator=None, classes=None):
            seen.append(classes)
            c = torch.randint(3, (n,), generator=generator) if classes is None else classes
            return torch.nn.functional.one_hot(c, 3).float()

        def forward(self, x, z=None, action=None):
            return x[:, -1] * 0 + z.argmax(1)[:, None, None, None].float() / 3

    from framegan.inference import autoregress, predictor

    out = autoregress(predictor(Recorder(), "torch", "fp32"), torch.zeros(2, 2, 3, 8, 8), 1, samples=6,
                      generator=torch.Generator().manual_seed(0))
    assert seen[-1].tolist() == [0, 1, 2, 0, 1, 2] * 2
    assert out[:, :, 0, 0, 0, 0].mul(3).round().tolist() == [[0, 1, 2, 0, 1, 2]] * 2
    autoregress(predictor(Recorder(), "torch", "fp32"), torch.zeros(2, 2, 3, 8, 8), 1, samples=2)
    assert seen[-1] is None


def test_systematic_draw_follows_the_odds_and_covers_the_classes():
    """Each sample's class alone follows the prior (a mean over samples stays unbiased); together
    the S samples of a context split in proportion: odds of 1/2 give two of four samples per side
    every time, where independent draws put all four on one side one time in eight."""
    from framegan.inference import systematic_draw

    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.5, 0.5], [0.12, 0.88], [0.0, 1.0]]).repeat(2000, 1)
    draws = systematic_draw(probs, 4, gen)
    assert draws.shape == (6000, 4)
    halves, rare, never = draws[0::3], draws[1::3], draws[2::3]
    assert ((halves == 0).sum(1) == 2).all()
    assert abs((rare == 0).float().mean().item() - 0.12) < 0.01 and ((rare == 0).sum(1) <= 1).all()
    assert (never == 1).all()
    for s in range(4):  # every sample position alone follows the odds
        assert abs((halves[:, s] == 0).float().mean().item() - 0.5) < 0.05
