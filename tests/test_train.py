"""Training: artifacts, TensorBoard content, exact resume, kill -9, NaN stop, G/D phases, torchrun."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from einops import rearrange, repeat

from framegan import engine, losses
from framegan.checkpoint import CheckpointError, checkpoint_config, load_checkpoint, save_checkpoint
from framegan.config import load_config
from framegan.nets import build_discriminator, build_generator
from framegan.sample_game import build_sample_store
from framegan.train import main as train_main

ROOT = Path(__file__).parents[1]
TINY = ["model.width=8", "model.depth=2", "model.d_width=8", "model.d_depth=2", "model.z_dim=4",
        "train.batch_size=4", "train.val_batches=1", "train.video_frames=3", "loss.variety_k=2",
        "loss.diversity_weight=0.1", "loss.r1_gamma=1", "loss.r1_every=2", "loss.gdl_weight=1",
        "loss.motion_weight=4"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_sample_store(tmp_path_factory.mktemp("data") / "sample", n_episodes=16)


def run(store, run_dir, *extra) -> int:
    return train_main([*TINY, f"data.root={store}", f"run.dir={run_dir}", *extra])


def records(run_dir) -> list[dict]:
    return [json.loads(ln) for ln in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def train_losses(run_dir) -> dict[int, dict]:
    return {r["step"]: {k: v for k, v in r.items() if k.startswith(("d_", "g_"))}
            for r in records(run_dir) if "g_total" in r}


def test_short_run_writes_every_artifact(store, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rd = tmp_path / "run"
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renamed.append(Path(b).name), real_replace(a, b)))
    assert run(store, rd, "train.steps=20", "train.log_every=5", "train.sample_every=10",
               "train.save_every=10", "train.keep_every=10") == 0
    assert "config.yaml" in renamed  # written under a temp name, then renamed into place: never half a file
    assert (rd / "config.yaml").read_text().count("z_inject") == 1
    assert {p.name for p in (rd / "checkpoints").iterdir()} == {"last.pt", "step_0000010.pt", "step_0000020.pt"}
    state = load_checkpoint(rd / "checkpoints" / "last.pt")
    assert state["step"] == 20 and {"G", "D", "G_ema", "opt_g", "opt_d", "scaler", "rng"} <= set(state)
    assert state["store"]["size"] == [64, 64]
    losses_ = train_losses(rd)
    assert sorted(losses_) == [5, 10, 15, 20]
    for step in losses_.values():
        assert {"d_real", "d_fake", "d_wrong", "g_adv", "g_rec", "g_gdl", "g_div"} <= set(step)
        assert all(torch.isfinite(torch.tensor(v)) for v in step.values())
    assert any("val/psnr_copy_last" in r for r in records(rd))
    ea = EventAccumulator(str(rd / "tb"), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = ea.Tags()
    assert {"train/g_adv", "train/d_real", "train/score_wrong", "train/gnorm_g", "train/lr_g",
            "train/steps_per_s", "val/psnr", "val/ssim_copy_last"} <= set(tags["scalars"])
    assert "samples/context|truth|3 samples" in tags["images"]
    video = ea.Images("rollout/4 samples")[-1]
    assert video.encoded_image_string[:6] == b"GIF89a" and video.step == 20
    import io

    from PIL import Image
    gif = Image.open(io.BytesIO(video.encoded_image_string))
    assert gif.n_frames == 4 + 3  # context + rollout frames


@pytest.mark.parametrize("extra", [[], ["data.augment=true", "data.num_workers=1"]], ids=["plain", "augment-workers"])
def test_resume_equals_uninterrupted_run(store, tmp_path, extra):
    """With a loader worker and flips too: the resumed run starts a new worker mid-epoch."""
    common = ["train.steps=8", "train.log_every=1", "train.sample_every=4", "train.save_every=4",
              "train.keep_every=4", "train.deterministic=true", *extra]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(store, a, *common) == 0
    # "Crash" after step 6: what survives on disk is the step-4 checkpoint (last.pt is only ever
    # replaced atomically) plus log lines up to step 6, which the resumed run must drop.
    (b / "checkpoints").mkdir(parents=True)
    shutil.copy(a / "checkpoints" / "step_0000004.pt", b / "checkpoints" / "last.pt")
    lines = (a / "metrics.jsonl").read_text().splitlines()
    (b / "metrics.jsonl").write_text("".join(ln + "\n" for ln in lines if json.loads(ln)["step"] <= 6))
    assert run(store, b, *common) == 0
    la, lb = train_losses(a), train_losses(b)
    assert sorted(lb) == list(range(1, 9))
    for step in range(5, 9):
        assert la[step] == lb[step], f"step {step} differs after resume"
    wa = load_checkpoint(a / "checkpoints" / "last.pt")["G_ema"]
    wb = load_checkpoint(b / "checkpoints" / "last.pt")["G_ema"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_kill_9_then_resume(store, tmp_path):
    rd = tmp_path / "run"
    cmd = [sys.executable, "-m", "framegan.train", *TINY, f"data.root={store}", f"run.dir={rd}",
           "train.steps=100000", "train.save_every=2", "train.sample_every=100000", "train.log_every=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    last = rd / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (last.exists() and load_checkpoint(last)["step"] >= 4):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(last)["step"]  # the file a kill -9 left behind still loads
    assert step >= 4
    assert train_main(["--resume", str(rd), f"train.steps={step + 2}"]) == 0
    assert load_checkpoint(last)["step"] == step + 2
    steps = [r["step"] for r in records(rd) if "g_total" in r]
    assert steps == sorted(set(steps)) and steps[-1] == step + 2  # no duplicated steps in the log


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(store, tmp_path, monkeypatch, capsys):
    real = losses.best_of_k  # called once per G step: it makes g_rec
    calls = {"n": 0}

    def poisoned(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        return out * float("nan") if calls["n"] > 5 else out

    monkeypatch.setattr(losses, "best_of_k", poisoned)
    rd = tmp_path / "run"
    assert run(store, rd, "train.steps=50", "train.save_every=2", "train.sample_every=1000") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # lines above: the progress bar
    assert err == "error: non-finite loss at step 5 in the G phase: term g_rec"
    state = load_checkpoint(rd / "checkpoints" / "last.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())


def test_g_step_sends_gradient_through_d_to_every_g_parameter_and_none_to_d():
    cfg = load_config(None, [*TINY, "loss.l1_weight=0", "loss.gdl_weight=0", "loss.diversity_weight=0",
                             "loss.variety_k=1"])
    G, D = build_generator(cfg.model, 4), build_discriminator(cfg.model, 4)
    gan = engine.build_gan(cfg, G, D, torch.device("cpu"), None)
    clip = torch.rand(4, 5, 3, 64, 64) * 2 - 1
    engine.d_step(gan, cfg, clip, step=1)           # D has gradients from its own phase ...
    for p in D.parameters():
        p.grad = None                               # ... cleared, so any new one would show
    out = engine.g_step(gan, cfg, clip, step=1)
    assert set(out) >= {"g_adv"} and "g_rec" not in out  # the adversarial term alone
    for name, p in G.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"G parameter {name} got no gradient via D"
    assert all(p.grad is None for p in D.parameters()), "D must be frozen in the G phase"
    assert all(p.requires_grad for p in D.parameters())  # and unfrozen again afterwards


def test_train_step_draws_once_d_learns_from_those_draws_and_g_learns_through_the_updated_d():
    """train_step: G runs once; D's fakes are one of each context's G-phase draws; the G phase
    scores its draws with D after D's update, and every G parameter gets gradient through it."""
    cfg = load_config(None, [*TINY, "loss.l1_weight=0", "loss.gdl_weight=0", "loss.diversity_weight=0",
                             "model.z_classes=2", "loss.variety_k=2"])
    G, D = build_generator(cfg.model, 4), build_discriminator(cfg.model, 4)
    gan = engine.build_gan(cfg, G, D, torch.device("cpu"), None)
    B, clip = 4, torch.rand(4, 5, 3, 64, 64) * 2 - 1
    g_calls, d_calls = [], []
    G.register_forward_hook(lambda m, inputs, out: g_calls.append(out.detach()))
    def d_weights():  # the parameters themselves (reading a spectral-normed weight would step its power iteration)
        return torch.cat([q.detach().flatten() for q in D.parameters()])

    D.register_forward_hook(lambda m, inputs, out: d_calls.append((inputs[1].detach(), d_weights())))
    before = d_weights()
    d_out, g_out = engine.train_step(gan, cfg, clip, step=1)
    assert len(g_calls) == 1 and g_calls[0].shape[0] == 2 * B       # one G forward: k=2 draws per context
    assert len(d_calls) == 2 and {"d_fake", "d_real"} <= set(d_out) and "g_adv" in g_out
    draws = rearrange(g_calls[0], "(s b) c h w -> b s c h w", s=2)
    fakes = d_calls[0][0][B:2 * B]                                   # D's stack: real, fake, wrong context
    for b in range(B):                                               # each fake is one of its context's draws
        assert any(torch.equal(fakes[b], draws[b, s]) for s in range(2))
    assert torch.equal(d_calls[0][1], before) and not torch.equal(d_calls[1][1], before)  # G sees D updated
    assert torch.equal(d_calls[1][0], g_calls[0])                    # the G phase scores its own draws
    for name, p in G.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"G parameter {name} got no gradient via D"
    assert all(p.requires_grad for p in D.parameters())


def test_best_of_k_gives_every_class_a_turn(monkeypatch):
    """With discrete noise, sample s of each context gets class s mod z_classes in the G phase."""
    cfg = load_config(None, [*TINY, "model.z_classes=3", "loss.variety_k=4"])
    G, D = build_generator(cfg.model, 4), build_discriminator(cfg.model, 4)
    gan = engine.build_gan(cfg, G, D, torch.device("cpu"), None)
    seen = []
    real_sample_z = G.sample_z
    monkeypatch.setattr(G, "sample_z", lambda n, **kw: seen.append(kw.get("classes")) or real_sample_z(n, **kw))
    engine.g_step(gan, cfg, torch.rand(2, 5, 3, 32, 32) * 2 - 1, step=1)
    assert torch.equal(seen[-1], torch.tensor([0, 0, 1, 1, 2, 2, 0, 0]))  # index = s * B + b, B = 2


def test_unrolled_g_step_trains_on_its_own_predictions():
    """data.horizon=2: the second step is predicted from G's own first frame (not the true one),
    with the gradient flowing back through that fed-back frame, and its error is in g_rec."""
    torch.manual_seed(0)
    clip = torch.rand(2, 6, 3, 32, 32) * 2 - 1   # K=4 context + 2 future frames

    def g_step(window: torch.Tensor):
        cfg = load_config(None, [*TINY, "data.horizon=2", "loss.adv_weight=0", "loss.diversity_weight=0"])
        torch.manual_seed(1)
        G, D = build_generator(cfg.model, 4), build_discriminator(cfg.model, 4)
        gan = engine.build_gan(cfg, G, D, torch.device("cpu"), None)
        calls = []
        G.register_forward_hook(lambda m, inputs, out: calls.append((inputs[0], out)))
        rec = engine.g_step(gan, cfg, window, step=1)["g_rec"].item()
        return rec, calls

    rec, calls = g_step(clip)
    assert len(calls) == 2                                     # one forward per predicted step
    (x1, y1), (x2, _) = calls
    assert x1.shape[0] == 2 and x2.shape[0] == 4               # the first step takes each context once
    x1 = repeat(x1, "b t c h w -> (s b) t c h w", s=2)         # for its k=2 draws (G's repeats)
    assert torch.equal(x2[:, :-1], x1[:, 1:])                  # the window slides by one frame ...
    assert torch.equal(x2[:, -1], y1.to(x2.dtype))             # ... and takes G's own prediction,
    assert not torch.equal(x2[:, -1], repeat(clip[:, 4], "b c h w -> (s b) c h w", s=2))  # not the truth,
    assert x2.grad_fn is not None                              # and is backpropagated through
    other = clip.clone()
    other[:, 5] = -other[:, 5]                                 # change only the second target
    assert g_step(other)[0] != rec


def test_d_step_leaves_g_untouched():
    cfg = load_config(None, TINY)
    G, D = build_generator(cfg.model, 4), build_discriminator(cfg.model, 4)
    gan = engine.build_gan(cfg, G, D, torch.device("cpu"), None)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    out = engine.d_step(gan, cfg, torch.rand(4, 5, 3, 64, 64) * 2 - 1, step=2)
    assert {"d_real", "d_fake", "d_wrong", "d_r1"} <= set(out)  # R1 due at step 2 (r1_every=2)
    assert all(p.grad is None for p in G.parameters())
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())


def test_regression_config_trains_without_d(store, tmp_path):
    rd = tmp_path / "reg"
    assert train_main(["--config", str(ROOT / "configs" / "regression.yaml"), *TINY[:4],
                       "train.batch_size=4", "train.val_batches=1", "train.video_frames=2",
                       f"data.root={store}", f"run.dir={rd}", "train.steps=4", "train.log_every=2",
                       "train.sample_every=4"]) == 0
    step = train_losses(rd)[4]
    assert "g_adv" not in step and "d_real" not in step and "g_rec" in step


def test_resume_refuses_a_config_that_changes_the_run(store, tmp_path, capsys):
    rd = tmp_path / "run"
    assert run(store, rd, "train.steps=2", "train.sample_every=100") == 0
    capsys.readouterr()
    # train.resume=auto on the same run.dir with other data, model or loss: one line naming them.
    other = tmp_path / "other"
    shutil.copytree(store, other)
    assert run(store, rd, "train.steps=4", "loss.l1_weight=2", f"data.root={other}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "data.root=" in err and "loss.l1_weight=1.0 (now 2.0)" in err and "model" not in err
    assert load_checkpoint(rd / "checkpoints" / "last.pt")["step"] == 2  # untouched
    assert train_main(["--resume", str(rd), "model.width=16"]) == 2
    assert "model.width=8 (now 16)" in capsys.readouterr().err
    # Keys that do not change the computation may change; --resume starts from the stored config.
    assert run(store, rd, "train.steps=3", "train.log_every=1", "train.save_every=3", "data.num_workers=1") == 0
    assert train_main(["--resume", str(rd), "train.steps=4", "train.sample_every=2"]) == 0
    assert load_checkpoint(rd / "checkpoints" / "last.pt")["step"] == 4


def test_torn_metrics_line_is_dropped_on_resume(store, tmp_path):
    rd = tmp_path / "run"
    assert run(store, rd, "train.steps=4", "train.log_every=1", "train.save_every=4", "train.sample_every=100") == 0
    with open(rd / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "g_total": 0.1')  # kill -9 in the middle of a line
    assert run(store, rd, "train.steps=6", "train.log_every=1", "train.sample_every=100") == 0
    assert [r["step"] for r in records(rd) if "g_total" in r] == [1, 2, 3, 4, 5, 6]


def test_fresh_start_replaces_the_logs_of_an_attempt_killed_before_its_first_checkpoint(store, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rd = tmp_path / "run"
    assert run(store, rd, "train.steps=5", "train.log_every=1", "train.sample_every=5") == 0
    (rd / "checkpoints" / "last.pt").unlink()  # what a kill -9 before the first save leaves: logs only
    assert run(store, rd, "train.steps=8", "train.log_every=1", "train.sample_every=100") == 0
    assert [r["step"] for r in records(rd) if "g_total" in r] == list(range(1, 9))
    assert [r["step"] for r in records(rd) if "val/psnr" in r] == [8]  # not the dead attempt's step 5
    ea = EventAccumulator(str(rd / "tb"), size_guidance={"scalars": 0}).Reload()
    assert [e.step for e in ea.Scalars("train/g_total")] == list(range(1, 9))
    assert [e.step for e in ea.Scalars("val/psnr")] == [8]


@pytest.mark.parametrize("resume", ["never", "{other}"], ids=["never", "other-run"])
def test_a_new_run_refuses_a_run_dir_that_holds_a_run(store, tmp_path, capsys, resume):
    """train.resume=never, or another run's checkpoint, would overwrite the run in run.dir."""
    rd, other = tmp_path / "run", tmp_path / "other"
    assert run(store, rd, "train.steps=2", "train.log_every=1", "train.sample_every=100") == 0
    if "other" in resume:
        assert run(store, other, "train.steps=1", "train.sample_every=100") == 0
    before = (rd / "checkpoints" / "last.pt").read_bytes(), (rd / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert run(store, rd, "train.steps=3", f"train.resume={resume.format(other=other)}") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "new run.dir" in err
    assert ((rd / "checkpoints" / "last.pt").read_bytes(), (rd / "metrics.jsonl").read_text()) == before


@pytest.mark.parametrize("extra, kept", [
    (["train.steps=7", "train.keep_every=2"], [2, 4, 6]),
    (["train.steps=6", "train.save_every=2", "train.keep_every=3"], [3, 6]),
])
def test_keep_every_keeps_its_steps_whatever_save_every(store, tmp_path, extra, kept):
    rd = tmp_path / "run"
    assert run(store, rd, "train.sample_every=100", *extra) == 0
    assert {p.name for p in (rd / "checkpoints").iterdir()} == {"last.pt", *(f"step_{s:07d}.pt" for s in kept)}
    assert [load_checkpoint(rd / "checkpoints" / f"step_{s:07d}.pt")["step"] for s in kept] == kept


@pytest.mark.parametrize("extra, words", [
    (["train.batch_size=500"], "fewer than one batch"),
    (["train.resume=/nonexistent.pt"], "points at no checkpoint"),
    (["train.resume={done}", "loss.l1_weight=2"], "loss.l1_weight=1.0 (now 2.0)"),
    (["model.d_backbone=transformer", "model.d_patch=5"], "model.d_patch=5"),  # the store's frames: 64x64
], ids=["batch", "no-checkpoint", "conflict", "patch"])
def test_refused_run_leaves_no_run_directory(store, tmp_path, monkeypatch, capsys, extra, words):
    done = tmp_path / "done"
    if any("{done}" in e for e in extra):
        assert run(store, done, "train.steps=1", "train.sample_every=100") == 0
        capsys.readouterr()
    extra = [e.format(done=done) for e in extra]
    rd = tmp_path / "new"
    assert run(store, rd, "train.steps=2", *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err
    assert not rd.exists()
    monkeypatch.chdir(tmp_path)  # without run.dir: no runs/default-<stamp> either
    assert train_main([*TINY, f"data.root={store}", "train.steps=2", *extra]) == 2
    assert not (tmp_path / "runs").exists()


def test_fp16_refused_where_train_device_auto_finds_no_cuda(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run(store, tmp_path / "run", "train.precision=fp16", "train.device=auto", "train.steps=1") == 2
    assert capsys.readouterr().err == "error: train.precision=fp16 needs CUDA; train.device=auto is cpu here\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override", ["run.dir={other}", "train.resume={other}/checkpoints/last.pt"])
def test_resume_refuses_overrides_that_it_would_ignore(store, tmp_path, capsys, override):
    rd, other = tmp_path / "run", tmp_path / "other"
    assert run(store, rd, "train.steps=2", "train.sample_every=100") == 0
    assert run(store, other, "train.steps=3", "train.sample_every=100") == 0
    capsys.readouterr()
    override = override.format(other=other)
    assert train_main(["--resume", str(rd), "train.steps=4", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume ") and err.count("\n") == 1 and repr(override) in err
    assert load_checkpoint(rd / "checkpoints" / "last.pt")["step"] == 2  # neither run extended
    assert load_checkpoint(other / "checkpoints" / "last.pt")["step"] == 3


def test_atomic_path_fsyncs_the_file_then_its_directory(tmp_path, monkeypatch):
    import stat

    from framegan.atomic import atomic_path

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real_fsync(fd)))
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
    assert synced == [False, True] and (tmp_path / "a.txt").read_text() == "x"


def test_load_checkpoint_lets_other_errors_through(tmp_path, monkeypatch):
    """Out of memory is not 'an unreadable checkpoint': the user must see what really happened."""
    ckpt = tmp_path / "c.pt"
    save_checkpoint(ckpt, {"step": 0})

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torch, "load", oom)
    with pytest.raises(torch.OutOfMemoryError):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("content", [b"", b"hello\n", b"PK\x03\x04 not a zip"], ids=["empty", "text", "bad-zip"])
def test_unreadable_checkpoint_is_a_checkpoint_error(tmp_path, content):
    (tmp_path / "c.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "c.pt")


@pytest.mark.parametrize("residual,output", [(True, "residual"), (False, "direct")])
def test_checkpoint_from_before_model_output_keeps_its_head(residual, output):
    """Checkpoints saved before ``model.output`` say ``model.residual``; they must load with the
    head they were trained with, not with today's default (composite), whose head is wider."""
    from framegan.config import GOutput, to_dict

    cfg = to_dict(load_config(None, TINY))
    del cfg["model"]["output"]
    cfg["model"]["residual"] = residual
    old = checkpoint_config({"config": cfg})
    assert old.model.output == GOutput(output)
    G = build_generator(old.model, old.data.context)
    assert G.head.out_channels == 3  # the composite head has mask channels: paint, then each older frame
    assert build_generator(load_config(None, TINY).model, 2).head.out_channels == 3 + 2


def test_checkpoint_from_before_action_history_sees_one_key():
    """A model trained before ``model.action_history`` saw one key per step: its checkpoint must
    not load as today's default (2 keys), whose first layers are wider; a new checkpoint keeps
    what it says."""
    from framegan.config import to_dict

    cfg = to_dict(load_config(None, [*TINY, "model.actions=3"]))
    del cfg["model"]["action_history"]
    old = checkpoint_config({"config": cfg})
    assert old.model.action_history == 1
    assert build_generator(old.model, old.data.context).action_shape(5) == (5,)
    cfg["model"]["action_history"] = 2
    assert checkpoint_config({"config": cfg}).model.action_history == 2
    assert load_config(None, TINY).model.action_history == 2


def test_checkpoint_from_before_copy_frames_copies_from_the_last_frame():
    from framegan.config import to_dict

    cfg = to_dict(load_config(None, TINY))
    del cfg["model"]["copy_frames"]
    old = checkpoint_config({"config": cfg})
    assert old.model.copy_frames == 1
    assert build_generator(old.model, old.data.context).head.out_channels == 4


def test_checkpoint_from_before_key_change_repeat_listed_every_window_once():
    """A resumed run must see the batches it would have seen: a config stored before
    ``data.key_change_repeat`` existed reads as 1, whatever today's default."""
    from framegan.config import to_dict

    cfg = to_dict(load_config(None, TINY))
    del cfg["data"]["key_change_repeat"]
    assert checkpoint_config({"config": cfg}).data.key_change_repeat == 1
    cfg["data"]["key_change_repeat"] = 3
    assert checkpoint_config({"config": cfg}).data.key_change_repeat == 3


def test_stored_config_interpolation_is_refused_not_resolved(tmp_path, capsys, monkeypatch):
    from framegan.config import to_dict

    monkeypatch.setenv("FRAMEGAN_SECRET", "s3cret")
    cfg = to_dict(load_config(None, TINY))
    cfg["data"]["root"] = "${oc.env:FRAMEGAN_SECRET}"
    cfg["run"]["name"] = "${data.root}"
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    save_checkpoint(ckpt, {"step": 1, "config": cfg})
    with pytest.raises(CheckpointError, match="interpolation") as e:
        checkpoint_config(load_checkpoint(ckpt), ckpt)
    assert "s3cret" not in str(e.value)
    assert train_main(["--resume", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "interpolation" in err and "s3cret" not in err and err.count("\n") == 1


# A torchrun entry point for the 2-process tests: framegan.train.main in each rank, plus two
# test-only instruments (no hook in framegan itself):
# - HASH_DIR=DIR: each rank writes DIR/rank<R>.json, the sha256 of G, D and G_ema as it holds them
#   at the end (rank 0 also hashes the checkpoint it wrote);
# - NAN_RANK=R: rank R's L1 reconstruction turns NaN from its third G step (step 2) on;
# - CRASH_VALIDATION=1: rank 0's validation (which it runs alone) raises.
ENTRY = """
import hashlib, json, os, sys
from pathlib import Path
import torch
from einops import rearrange, repeat
from framegan import engine, losses
from framegan.train import main

def digest(state):
    h = hashlib.sha256()
    for name, v in state.items():
        h.update(name.encode() + v.detach().cpu().numpy().tobytes())
    return h.hexdigest()

held, rank = {}, int(os.environ["RANK"])
ema = engine.update_ema
engine.update_ema = lambda gan, cfg, step: (held.update(gan=gan), ema(gan, cfg, step))
if os.environ.get("NAN_RANK") == str(rank):
    rec, calls = losses.best_of_k, [0]  # once per G step: it makes g_rec
    def poisoned(*a, **k):
        calls[0] += 1
        return rec(*a, **k) * (float("nan") if calls[0] >= 3 else 1.0)
    losses.best_of_k = poisoned
if os.environ.get("CRASH_VALIDATION") and rank == 0:
    import framegan.train
    def crash(*a, **k):
        raise RuntimeError("validation crashed")
    framegan.train.validate = crash
rc = main(sys.argv[1:])
if os.environ.get("HASH_DIR"):
    gan = held["gan"]
    out = {"G": digest(gan.G.state_dict()), "D": digest(gan.D.state_dict()), "G_ema": digest(gan.G_ema.state_dict())}
    if rank == 0:
        run = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("run.dir="))
        ckpt = torch.load(Path(run) / "checkpoints" / "last.pt", weights_only=True)
        out["checkpoint"] = {k: digest(ckpt[k]) for k in ("G", "D", "G_ema")}
    (Path(os.environ["HASH_DIR"]) / f"rank{rank}.json").write_text(json.dumps(out))
sys.exit(rc)
"""
DDP = [*TINY, "train.steps=8", "train.log_every=1", "train.sample_every=8", "train.save_every=4",
       "train.keep_every=4", "train.device=cpu", "train.deterministic=true", "data.augment=true"]


def torchrun(tmp_path, args, timeout=300, **env) -> subprocess.CompletedProcess:
    """2 CPU processes (gloo), one thread each, on a free port."""
    entry = tmp_path / "entry.py"
    entry.write_text(ENTRY)
    with socket.socket() as sock:  # a free port for the rendezvous (0 is not accepted by torchrun)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
           str(entry), *[str(a) for a in args]]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # On a timeout (a hung rank): SIGTERM to torchrun, which stops its ranks (each in a session
        # of its own, out of reach of a killpg here; they would outlive the test and hold its
        # pipes open), then SIGKILL to whatever is left of torchrun's own group.
        proc.terminate()
        try:
            proc.communicate(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def ddp_run(store, tmp_path_factory):
    """An uninterrupted 2-process run of 8 steps (checkpoints at 4 and 8) and its rank hashes."""
    tmp = tmp_path_factory.mktemp("ddp")
    rd, hashes = tmp / "run", tmp / "hashes"
    hashes.mkdir()
    p = torchrun(tmp, [*DDP, f"data.root={store}", f"run.dir={rd}"], HASH_DIR=str(hashes))
    return rd, hashes, p


def test_torchrun_ranks_hold_identical_weights_and_rank_0_writes_them(ddp_run):
    rd, hashes, p = ddp_run
    assert p.returncode == 0, p.stderr[-2000:]
    assert "terminate called" not in p.stderr
    r0, r1 = (json.loads((hashes / f"rank{r}.json").read_text()) for r in (0, 1))
    # Ranks build G and D from different seeds; without the broadcast before step 1 they differ.
    assert {k: r0[k] for k in ("G", "D", "G_ema")} == r1
    assert r0["checkpoint"] == r1  # the checkpoint holds what every rank holds
    assert load_checkpoint(rd / "checkpoints" / "last.pt")["step"] == 8
    assert [r["step"] for r in records(rd) if "g_total" in r] == list(range(1, 9))  # rank 0 logs alone


def test_torchrun_resume_reproduces_the_uninterrupted_run(ddp_run, store, tmp_path):
    a, _, p = ddp_run
    assert p.returncode == 0, p.stderr[-2000:]
    b = tmp_path / "b"
    (b / "checkpoints").mkdir(parents=True)
    shutil.copy(a / "checkpoints" / "step_0000004.pt", b / "checkpoints" / "last.pt")
    lines = (a / "metrics.jsonl").read_text().splitlines()
    (b / "metrics.jsonl").write_text("".join(ln + "\n" for ln in lines if json.loads(ln)["step"] <= 6))
    q = torchrun(tmp_path, [*DDP, f"data.root={store}", f"run.dir={b}"])
    assert q.returncode == 0, q.stderr[-2000:]
    la, lb = train_losses(a), train_losses(b)
    assert sorted(lb) == list(range(1, 9))
    for step in range(5, 9):
        assert la[step] == lb[step], f"step {step} differs after the 2-process resume"
    wa, wb = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (a, b))
    for net in ("G", "D", "G_ema"):
        assert all(torch.equal(wa[net][k], wb[net][k]) for k in wa[net]), net


def test_torchrun_with_keys_keeps_every_key_weight_identical_across_ranks(tmp_path):
    """The action path under torchrun: G's key conditioning, D's key planes and per-position key
    projection (a spectral-normed embedding), with the default key history of 2. Each rank sees
    other windows and other wrong keys; only the gradient all-reduce keeps them one model."""
    import numpy as np

    from framegan.store import StoreWriter

    rng = np.random.default_rng(0)
    store = tmp_path / "keys"
    with StoreWriter(store, size=(32, 32), fps=15, actions=True) as w:
        w.name_actions({0: "NOOP", 3: "RIGHT", 4: "LEFT"})
        for episode in range(4):
            x = 12
            for i in range(30):
                key = int(rng.choice([0, 3, 4]))
                frame = np.zeros((32, 32, 3), np.uint8)
                frame[12:20, x:x + 8] = 255
                w.add(frame, source=f"ep{episode}.mp4", index=i, action=key)
                x = int(np.clip(x + {0: 0, 3: 2, 4: -2}[key], 0, 24))
            w.cut()
    rd, hashes = tmp_path / "run", tmp_path / "hashes"
    hashes.mkdir()
    args = [a for a in DDP if a != "data.augment=true"]
    p = torchrun(tmp_path, [*args, "train.save_every=8", "train.keep_every=0", f"data.root={store}",
                            f"run.dir={rd}"], HASH_DIR=str(hashes))
    assert p.returncode == 0, p.stderr[-2000:]
    r0, r1 = (json.loads((hashes / f"rank{r}.json").read_text()) for r in (0, 1))
    assert {k: r0[k] for k in ("G", "D", "G_ema")} == r1 and r0["checkpoint"] == r1
    state = load_checkpoint(rd / "checkpoints" / "last.pt")
    assert state["config"]["model"]["actions"] == 3 and state["config"]["model"]["action_history"] == 2
    assert state["D"]["embed.parametrizations.weight.original"].shape[0] == 6  # 3 keys x 2 positions
    assert any("d_wrong_action" in r for r in records(rd))


def test_a_2_process_checkpoint_resumes_in_1_process_with_a_note(ddp_run, store, tmp_path, capsys):
    a, _, p = ddp_run
    assert p.returncode == 0, p.stderr[-2000:]
    (tmp_path / "c" / "checkpoints").mkdir(parents=True)
    shutil.copy(a / "checkpoints" / "step_0000004.pt", tmp_path / "c" / "checkpoints" / "last.pt")
    assert train_main([*DDP, f"data.root={store}", f"run.dir={tmp_path / 'c'}", "train.steps=5"]) == 0
    assert "note: the run had 2 processes, now 1" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "c" / "checkpoints" / "last.pt")["step"] == 5


def test_torchrun_non_finite_loss_on_one_rank_stops_every_rank(store, tmp_path):
    rd = tmp_path / "run"
    p = torchrun(tmp_path, [*DDP, f"data.root={store}", f"run.dir={rd}", "train.save_every=1"],
                 timeout=240, NAN_RANK="1")
    message = "error: non-finite loss at step 2 in the G phase: term g_rec (on 1 of 2 processes)"
    assert p.returncode != 0
    assert p.stderr.count(message + "\n") == 2, p.stderr[-2000:]  # each rank, one line
    assert f'File "{ROOT / "framegan"}' not in p.stderr  # torchrun's own report follows, no framegan traceback
    assert load_checkpoint(rd / "checkpoints" / "last.pt")["step"] == 2  # the last good step


@pytest.mark.parametrize("case", ["run-dir", "validation"])
def test_torchrun_failure_on_rank_0_alone_stops_every_rank(store, tmp_path, case):
    """Rank 0 alone makes the run directory and validates: when either fails, rank 1 must not
    wait for it in its next collective (a hang, with nothing printed)."""
    if case == "run-dir":
        (tmp_path / "file").write_text("x")
        args, env, message = [f"run.dir={tmp_path / 'file' / 'run'}"], {}, f"error: {tmp_path / 'file'}"
    else:
        args, env, message = [f"run.dir={tmp_path / 'run'}", "train.sample_every=2"], {"CRASH_VALIDATION": "1"}, \
            "RuntimeError: validation crashed"
    p = torchrun(tmp_path, [*DDP, f"data.root={store}", *args], timeout=150, **env)  # a hang: TimeoutExpired
    assert p.returncode != 0
    assert p.stderr.count(message) == 1, p.stderr[-3000:]
    if case == "run-dir":
        assert "Not a directory" in p.stderr and f'File "{ROOT / "framegan"}' not in p.stderr


@pytest.mark.parametrize("extra", [
    ["model.z_inject=concat", "loss.adv_type=nonsaturating"],
    ["model.z_inject=add", "loss.adv_type=lsgan", "loss.variety_k=1", "loss.diversity_weight=1"],
    ["model.d_backbone=transformer", "model.d_patch=8", "loss.r1_gamma=1", "loss.r1_every=1"],
    ["model.output=direct", "loss.adv_motion_weight=0", "loss.l2_weight=1", "loss.wrong_context_weight=0"],
    ["model.z_dim=0", "model.z_classes=2", "loss.variety_k=4", "loss.diversity_weight=1"],
])
def test_every_method_option_takes_finite_steps(extra):
    cfg = load_config(None, [*TINY, *extra])
    gan = engine.build_gan(cfg, build_generator(cfg.model, 4), build_discriminator(cfg.model, 4),
                           torch.device("cpu"), torch.bfloat16)
    clip = torch.rand(4, 5, 3, 32, 32) * 2 - 1
    for step in range(2):
        out = {**engine.d_step(gan, cfg, clip, step), **engine.g_step(gan, cfg, clip, step)}
        engine.update_ema(gan, cfg, step)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert ("d_wrong" in out) == (cfg.loss.wrong_context_weight > 0)


def test_minutes_budget_stops_saves_and_validates_at_the_step_it_ran_out(store, tmp_path, capsys):
    rd = tmp_path / "run"
    assert run(store, rd, "train.steps=100000", "train.minutes=0.0001", "train.log_every=1000",
               "train.sample_every=1000", "train.save_every=1000") == 0
    state = load_checkpoint(rd / "checkpoints" / "last.pt")
    assert 1 <= state["step"] < 100000
    assert f"ran out at step {state['step']}" in capsys.readouterr().out
    logged = records(rd)
    assert logged[-1]["step"] == state["step"] and any("val/psnr" in r for r in logged)
