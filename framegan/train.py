"""python -m framegan.train [--config FILE] [--resume RUN_DIR|CKPT] [key=value ...]

Trains the conditional GAN of ``engine.py`` on a frame store. Tensors are ``(B, T, C, H, W)`` in
[-1, 1]. A run directory holds everything the run produced:

    runs/<name>-<timestamp>/
      config.yaml              the resolved config
      checkpoints/last.pt      full state every train.save_every steps (atomic), + step_*.pt
      tb/                      TensorBoard: losses, D scores, grad norms, lr, speed, val PSNR/SSIM
                               vs copy-last, image grids, rollout GIFs
      metrics.jsonl            the same scalars, one JSON object per line

Killed at any point (even ``kill -9``), the same command with ``run.dir=<that dir>`` (or
``--resume <dir>``) continues from ``last.pt`` and reproduces the uninterrupted run's losses,
under torchrun too (every rank's RNG states are in the checkpoint); killed before its first
checkpoint, it starts over, logs included. A resume whose config differs in what the run computes
is refused (``config.RESUME_MAY_CHANGE`` lists what may change), and so is ``train.resume=never``
on a run directory that holds a run. Every check runs before the run directory is made: a refused
run leaves nothing behind.
"""
from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from framegan import distributed, engine
from framegan.atomic import atomic_path
from framegan.checkpoint import CheckpointError, checkpoint_config, load_checkpoint, load_weights, save_checkpoint
from framegan.cli import Parser, add_threads, resolve_device, run_main, set_threads
from framegan.config import Config, ConfigError, DBackbone, Precision, load_config, resume_conflicts, to_dict, to_yaml
from framegan.frames import to_pixels
from framegan.nets import build_discriminator, build_generator, count_params
from framegan.nets.discriminator import MAX_GRID
from framegan.nets.inverse import InverseModel, inverse_fits
from framegan.precision import autocast_dtype
from framegan.summaries import JsonlLog, add_gif, tile

SAMPLE_ROOT = "data/sample"


# ----------------------------------------------------------------------------- set-up
def ensure_store(root: str, d: distributed.Dist) -> Path:
    """The default store is the built-in sample gameplay, generated and extracted on first use."""
    path = Path(root)

    def build() -> None:
        if not (path / "manifest.json").exists():
            from framegan.sample_game import build_sample_store
            build_sample_store(path)

    if root == SAMPLE_ROOT:
        distributed.on_main(d, build)  # the others wait for rank 0's store (and stop if it fails)
    return path


def run_dir(cfg: Config, d: distributed.Dist) -> Path:
    """The run directory's path (``cfg.run.dir``, filled in if empty); nothing is created yet:
    ``start_logs`` makes it once every check has passed, so a refused run leaves nothing behind."""
    if not cfg.run.dir:
        name = cfg.run.name or "default"
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        cfg.run.dir = f"runs/{name}-{stamp}"
        if d.enabled:  # every rank must use rank 0's timestamp
            box = [cfg.run.dir]
            torch.distributed.broadcast_object_list(box, src=0)
            cfg.run.dir = box[0]
    return Path(cfg.run.dir)


def start_logs(cfg: Config, run: Path, step: int):
    """Rank 0: the run directory, its config.yaml, and (TensorBoard writer, metrics.jsonl log)
    opened at ``step``. Both logs drop what lies past ``step``: after a crash, what the crashed
    run logged after its checkpoint; on a fresh start (step 0), everything, e.g. an attempt
    killed before its first checkpoint (appending to it would log steps 1.. twice)."""
    from torch.utils.tensorboard import SummaryWriter

    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    with atomic_path(run / "config.yaml") as tmp:
        tmp.write_text(to_yaml(cfg))
    return SummaryWriter(str(run / "tb"), purge_step=step), JsonlLog(run / "metrics.jsonl", resume_step=step)


def check_frame_size(cfg: Config, H: int, W: int) -> None:
    """What the networks need of the store's frame size (known once the store is open)."""
    m = cfg.model
    if H % 2 ** m.depth or W % 2 ** m.depth:
        raise ConfigError(f"frames are {H}x{W}: model.depth={m.depth} needs both divisible by {2 ** m.depth}")
    if m.d_backbone == DBackbone.transformer:
        if H % m.d_patch or W % m.d_patch:
            raise ConfigError(f"frames are {H}x{W}: model.d_patch={m.d_patch} (transformer D) must divide both")
        if max(H, W) // m.d_patch > MAX_GRID:
            raise ConfigError(f"frames are {H}x{W}: the transformer D takes at most {MAX_GRID} patches per "
                              f"side; raise model.d_patch to at least {-(-max(H, W) // MAX_GRID)}")


class Batches:
    """Deterministic, resumable batch stream: batch number n is a pure function of (seed, rank, n).

    Each epoch is one DistributedSampler permutation (rank-sliced under torchrun); resuming at
    batch n skips straight to it, so a resumed run sees exactly the batches it would have seen.
    ``augment`` flips windows here, with a generator seeded by (seed, rank, n): not in the
    dataset, whose loader workers would draw from an RNG that restarts when a resume recreates
    them mid-epoch.
    """

    def __init__(self, dataset, batch_size: int, d: distributed.Dist, seed: int, start: int, workers: int,
                 augment: bool = False):
        self.ds, self.B, self.seed, self.workers = dataset, batch_size, seed, workers
        self.rank, self.augment = d.rank, augment
        self.sampler = DistributedSampler(dataset, num_replicas=d.world, rank=d.rank, shuffle=True,
                                          seed=seed, drop_last=True)
        per_rank = len(self.sampler)
        if per_rank < batch_size:
            raise ConfigError(f"the training split has {len(dataset)} windows: fewer than one batch of "
                              f"{batch_size} per process; lower train.batch_size")
        self.per_epoch = per_rank // batch_size
        self.n = start
        self._it = None

    def _epoch(self, epoch: int, skip: int):
        self.sampler.set_epoch(epoch)
        idx = list(self.sampler)
        batches = [idx[i * self.B:(i + 1) * self.B] for i in range(skip, self.per_epoch)]
        # batch_size=None + a sampler of index lists: the dataset builds each batch in one call.
        # The loader's own generator keeps the global RNG untouched (exact resume).
        gen = torch.Generator().manual_seed(self.seed + epoch)
        return iter(DataLoader(self.ds, batch_size=None, sampler=batches, num_workers=self.workers,
                               generator=gen))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:  # (frames, actions)
        epoch, pos = divmod(self.n, self.per_epoch)
        if self._it is None or pos == 0:
            self._it = self._epoch(epoch, pos)
        frames, actions = next(self._it)
        if self.augment:  # horizontal flips of whole windows (B, T, C, H, W); never with actions
            flip = np.random.default_rng([self.seed, self.rank, self.n]).random(len(frames)) < 0.5
            flip = torch.from_numpy(flip)
            frames[flip] = frames[flip].flip(-1)
        self.n += 1
        return frames, actions


# ----------------------------------------------------------------------------- checkpoints
def rng_state(gan: engine.GAN) -> dict:
    """This process's random streams: the global torch RNG(s) and G's noise stream."""
    rng = {"torch": torch.get_rng_state(), "z": gan.z_gen.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def training_state(gan: engine.GAN, cfg: Config, step: int, store_info: dict, rngs: list[dict]) -> dict:
    """The checkpoint; ``rngs`` holds every rank's ``rng_state`` in rank order (one outside torchrun)."""
    return {
        "step": step, "config": to_dict(cfg), "store": store_info,
        "G": engine.unwrap(gan.G).state_dict(), "D": engine.unwrap(gan.D).state_dict(),
        "G_ema": gan.G_ema.state_dict(), "opt_g": gan.opt_g.state_dict(), "opt_d": gan.opt_d.state_dict(),
        "scaler": gan.scaler.state_dict(), "rng": rngs,
        **({"Q": gan.Q.state_dict(), "opt_q": gan.opt_q.state_dict()} if gan.Q is not None else {}),
    }


def restore(gan: engine.GAN, state: dict, where: str, d: distributed.Dist, seed: int) -> int:
    load_weights(engine.unwrap(gan.G), state["G"], f"{where} [G]")
    load_weights(engine.unwrap(gan.D), state["D"], f"{where} [D]")
    load_weights(gan.G_ema, state["G_ema"], f"{where} [G_ema]")
    gan.opt_g.load_state_dict(state["opt_g"])
    gan.opt_d.load_state_dict(state["opt_d"])
    gan.scaler.load_state_dict(state["scaler"])
    # (a q saved before the class prior starts untrained too: its optimizer state lacks the prior's)
    q_ok = gan.Q is not None and "Q" in state and gan.Q.state_dict().keys() == state["Q"].keys() \
        and inverse_fits(gan.Q, state["Q"])
    if q_ok:
        load_weights(gan.Q, state["Q"], f"{where} [Q]")
        gan.opt_q.load_state_dict(state["opt_q"])
    elif gan.Q is not None and d.main:  # a run from before the inverse model (or its current design)
        print(f"note: {where} holds no inverse model of this design: it starts untrained here")
    step = int(state["step"])
    rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]  # a dict before torchrun resume
    if len(rngs) != d.world:  # another process count: same batches per step, not the same draws
        if d.main:
            print(f"note: the run had {len(rngs)} processes, now {d.world}: training goes on, but does "
                  f"not reproduce a run that kept {len(rngs)}")
        torch.manual_seed(seed + d.rank + 1000 * step)
        gan.z_gen.manual_seed(seed + 1 + 1000 * d.rank + step)
        return step
    # RNG states must be CPU ByteTensors, whatever device the checkpoint was mapped to.
    rng = {k: [t.cpu() for t in v] if isinstance(v, (list, tuple)) else v.cpu() for k, v in rngs[d.rank].items()}
    torch.set_rng_state(rng["torch"])
    gan.z_gen.set_state(rng["z"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return step


def check_resumable(old: Config, new: Config, ckpt: Path, run: Path) -> None:
    """A resume continues one run: refuse a config that changes what the run computes."""
    changed = resume_conflicts(old, new)
    if changed:
        what = ", ".join(f"{k}={a!r} (now {b!r})" for k, a, b in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        # (a new run.dir is a way out only where the checkpoint came from run.dir itself)
        other = " or pass a new run.dir" if ckpt.resolve().parent.parent == run.resolve() else ""
        raise CheckpointError(f"{ckpt}: this run was trained with {what}{more}; a resume must continue the "
                              f"same run: drop those overrides (--resume RUN_DIR starts from the run's own "
                              f"config){other}")


def resume_path(cfg: Config, run: Path) -> Path | None:
    """The checkpoint this run starts from (None: a fresh start)."""
    r, last = cfg.train.resume, run / "checkpoints" / "last.pt"
    if r == "auto":
        return last if last.exists() else None
    p = None
    if r != "never":
        p = Path(r) / "checkpoints" / "last.pt" if Path(r).is_dir() else Path(r)
        if not p.exists():
            raise CheckpointError(f"{r}: train.resume points at no checkpoint")
    # Refused, not started over: another run in run.dir (a fresh one, or another run's checkpoint)
    # would overwrite its last.pt at the first save and truncate its logs, with no way back; a
    # user who means to discard it can delete it, one who mistyped run.dir keeps it. (A
    # checkpoint of run.dir's own, e.g. a kept step_*.pt to go back to, continues the same run.)
    if last.exists() and (p is None or p.resolve().parent != last.resolve().parent):
        raise CheckpointError(f"{run} already holds a run ({last}); train.resume={r} would overwrite it: "
                              f"pass a new run.dir (or delete {run} to start it over)")
    return p


# ----------------------------------------------------------------------------- validation / samples
@torch.no_grad()
def validate(gan: engine.GAN, cfg: Config, val_ds, step: int, writer, log: JsonlLog) -> dict:
    """Val PSNR/SSIM and high-frequency power ratio of G_ema vs copy-last on the same windows; an
    image grid; a rollout GIF."""
    from framegan import metrics
    from framegan.data import pick_windows
    from framegan.inference import predictor
    from framegan.rollout import rollout

    K, G = cfg.data.context, gan.G_ema
    predict = predictor(G, "torch", cfg.train.precision)  # torch: G_ema changes between calls
    gen = torch.Generator(gan.device).manual_seed(cfg.train.seed)
    sums, n = {"psnr": 0.0, "ssim": 0.0, "psnr_copy_last": 0.0, "ssim_copy_last": 0.0}, 0
    hf = {"truth": 0.0, "": 0.0, "_copy_last": 0.0}  # energies: summed over windows, then divided
    first = None
    B = cfg.train.batch_size
    # Fixed windows spread evenly over the whole validation split (the first ones alone can be
    # one episode's static intro: Ms. Pac-Man's), no DataLoader: validation must not touch the
    # training RNG streams.
    windows = pick_windows(len(val_ds), B * cfg.train.val_batches)
    for start in range(0, len(windows), B):
        clip, actions = val_ds[windows[start:start + B]]
        clip = clip.to(gan.device)
        ctx, truth = engine.split_clip(clip, K)
        a = engine.step_actions(actions.to(gan.device), K, history=G.action_history) if G.num_actions else None
        pred = predict(ctx, G.sample_z(ctx.shape[0], device=gan.device, generator=gen), a)
        for name, p in (("", pred), ("_copy_last", ctx[:, -1])):
            sums["psnr" + name] += metrics.psnr(p, truth).clamp(max=100).sum().item()
            sums["ssim" + name] += metrics.ssim(p, truth).sum().item()
            hf[name] += metrics.hf_energy(p).sum().item()
        hf["truth"] += metrics.hf_energy(truth).sum().item()
        n += clip.shape[0]
        if first is None:
            first, first_a = clip, a
    if n == 0:
        return {}
    out = {f"val/{k}": v / n for k, v in sums.items()}
    for name in ("", "_copy_last"):
        out[f"val/hf_ratio{name}"] = hf[name] / hf["truth"] if hf["truth"] > 0 else float("nan")
    for k, v in out.items():
        writer.add_scalar(k, v, step)
    log.write({"step": step, **out})
    # Image grid: per row, context | truth | 3 samples.
    rows = []
    ctx, truth = engine.split_clip(first[:4], K)
    a = first_a[:4] if first_a is not None else None
    samples = [predict(ctx, G.sample_z(ctx.shape[0], device=gan.device, generator=gen), a) for _ in range(3)]
    for b in range(ctx.shape[0]):
        rows.append(to_pixels(torch.cat([ctx[b], truth[b:b + 1]] + [s[b:b + 1] for s in samples])))
    writer.add_image("samples/context|truth|3 samples", tile(rows), step, dataformats="HWC")
    # Rollout video: one context, 4 sampled futures side by side, fed back autoregressively.
    # With action input, the window's key is held for the whole video (only its first step is recorded).
    keys = history = None
    if a is not None:
        last = a[0] if a.ndim == 1 else a[0, -1]
        keys, history = last.repeat(cfg.train.video_frames), None if a.ndim == 1 else a[0, :-1]
    fut = rollout(predict, ctx[0], cfg.train.video_frames, samples=4, seed=cfg.train.seed,
                  actions=keys, history=history)  # (S, T, C, H, W)
    ctx_rep = ctx[0].unsqueeze(0).expand(fut.shape[0], -1, -1, -1, -1).to(fut.device)
    video = to_pixels(torch.cat([ctx_rep, fut], dim=1))                               # (S, K+T, H, W, 3)
    add_gif(writer, "rollout/4 samples", np.concatenate(list(video), axis=2), step, fps=4)
    return out


def resolve_actions(cfg: Config, store) -> None:
    """``model.actions=-1`` (auto) becomes the store's number of actions (0 without a key log);
    an explicit count must match the store's."""
    n = len(store.action_values)
    if cfg.model.actions == -1:
        cfg.model.actions = n
    elif cfg.model.actions > 0 and cfg.model.actions != n:
        raise ConfigError(f"model.actions={cfg.model.actions}, but {store.path} has "
                          f"{n or 'no'} actions (-1 = the store's, 0 = no action input)")
    if cfg.model.actions and cfg.model.action_history > cfg.data.context:
        raise ConfigError(f"model.action_history must be in 1..data.context ({cfg.data.context}) for "
                          f"{store.path}'s keys, got {cfg.model.action_history}")
    if cfg.model.actions and cfg.data.augment:
        raise ConfigError(f"data.augment (horizontal flips) would swap the meaning of {store.path}'s "
                          f"left/right keys: set data.augment=false or model.actions=0")


# ----------------------------------------------------------------------------- the run
def train(cfg: Config) -> Path:
    d = distributed.init(cfg.train.device)
    together = False  # whether every rank ends here the same way (only then may they meet in a barrier)
    try:
        run = _train(cfg, d)
        together = True
        return run
    except engine.NonFiniteLoss as e:  # every rank stops at the same step (one all-reduce)
        together = True
        if d.enabled:
            # Say it before the closing barrier: once one rank has exited, torchrun kills the
            # others, which may not have printed yet (seen under load in the test suite).
            print(f"error: {e}", file=sys.stderr, flush=True)
            e.reported = True
        raise
    finally:
        distributed.shutdown(d, wait=together)


def _train(cfg: Config, d: distributed.Dist) -> Path:
    from framegan.data import ClipDataset
    from framegan.store import StoreError, open_store

    t, K = cfg.train, cfg.data.context
    device = resolve_device(t.device, f"train.device={t.device}", d.local_rank if d.enabled else None)
    if t.precision == Precision.fp16 and device.type != "cuda":  # (config.validate sees only train.device=cpu)
        raise ConfigError(f"train.precision=fp16 needs CUDA; train.device={t.device} is {device} here")
    dtype = autocast_dtype(t.precision, device)
    torch.manual_seed(t.seed + d.rank)  # per-rank seeds: ranks must not draw identical noise
    np.random.seed(t.seed + d.rank)
    if t.deterministic:
        torch.use_deterministic_algorithms(True)
    if t.batch_size % d.world:
        raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by {d.world} processes")

    store = open_store(ensure_store(cfg.data.root, d))
    H, W = store.size
    check_frame_size(cfg, H, W)
    resolve_actions(cfg, store)
    store_info = {**store.preprocess, "size": [H, W], "fps": store.fps, "actions": {
        "values": store.action_values if cfg.model.actions else [],
        "names": store.action_names if cfg.model.actions else []}}
    ds_args = dict(context=K, stride=cfg.data.stride, val_fraction=cfg.data.val_fraction)
    train_ds = ClipDataset(store, horizon=cfg.data.horizon, split="train", **ds_args,  # flips: Batches
                           key_change_repeat=cfg.data.key_change_repeat if cfg.model.actions else 1,
                           key_history=cfg.model.action_history)
    try:
        val_ds = ClipDataset(store, horizon=1, split="val", **ds_args)
    except StoreError:  # too few or too short segments to hold any out: train on, say so
        val_ds = []
        if d.main:
            print(f"note: {store.path} holds no validation window (data.val_fraction={cfg.data.val_fraction}); "
                  "training without validation")

    G = build_generator(cfg.model, K).to(device)
    D = build_discriminator(cfg.model, K).to(device)
    if t.channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    Q = None
    if cfg.model.z_classes and cfg.model.inverse and cfg.loss.variety_k > 1:
        Q = InverseModel(K, cfg.model.z_classes).to(device)
    gan = engine.build_gan(cfg, G, D, device, dtype, Q)
    if t.compile:
        gan.G, gan.D = torch.compile(G), torch.compile(D)

    run = run_dir(cfg, d)
    ckpt = resume_path(cfg, run)
    step = 0
    if d.enabled:  # per-rank noise streams; a resume restores each rank's own
        gan.z_gen.manual_seed(t.seed + 1 + 1000 * d.rank)
    if ckpt is not None:
        state = load_checkpoint(ckpt, map_location=device)
        check_resumable(checkpoint_config(state, ckpt), cfg, ckpt, run)
        step = restore(gan, state, str(ckpt), d, t.seed)
        del state
    if not distributed.same_everywhere(d, step):
        raise CheckpointError(f"{run}: the processes found different checkpoints to resume from; "
                              f"run.dir must be on a filesystem every node shares")
    distributed.broadcast_state(d, [m for m in (engine.unwrap(gan.G), engine.unwrap(gan.D), gan.G_ema, gan.Q) if m],
                                [o for o in (gan.opt_g, gan.opt_d, gan.opt_q) if o])
    batches = Batches(train_ds, t.batch_size // d.world, d, t.seed, step * t.n_d, cfg.data.num_workers,
                      augment=cfg.data.augment)
    reduce = (lambda m: distributed.all_reduce_grads(m, d.world)) if d.enabled else None

    # Every check has passed: only now the run directory (rank 0's I/O; the others learn if it failed).
    writer, log = distributed.on_main(d, lambda: start_logs(cfg, run, step)) or (None, None)
    if d.main:
        print(f"run dir: {run}   (TensorBoard: tensorboard --logdir {run / 'tb'})")
        print(f"G {count_params(G) / 1e6:.2f} M params, D {count_params(D) / 1e6:.2f} M params; "
              f"{len(train_ds)} train / {len(val_ds)} val windows; device {device}, "
              f"autocast {dtype or 'off'}" + (f"; resumed at step {step} from {ckpt}" if ckpt else ""))
        print(f"resume after an interruption: python -m framegan.train --resume {run}")

    def kept(step: int) -> bool:
        return bool(t.keep_every) and step % t.keep_every == 0

    def save(step: int) -> None:
        rngs = distributed.gather(d, rng_state(gan))  # every rank takes part; rank 0 writes

        def write() -> None:
            state = training_state(gan, cfg, step, store_info, rngs)
            save_checkpoint(run / "checkpoints" / "last.pt", state)
            if kept(step):
                save_checkpoint(run / "checkpoints" / f"step_{step:07d}.pt", state)

        distributed.on_main(d, write)  # a full disk on rank 0 stops every rank

    bar = tqdm(total=t.steps, initial=step, disable=not d.main, dynamic_ncols=True, desc="train")
    tic, tic_step = time.perf_counter(), step
    deadline = time.perf_counter() + 60 * t.minutes if t.minutes else None
    done = step >= t.steps
    try:
        while not done:
            gan.G.train()
            for i in range(t.n_d):  # n_d - 1 D phases of their own, then one D and one G phase
                clip, actions = batches.next()
                clip = clip.to(device, non_blocking=True)
                actions = actions.to(device) if cfg.model.actions else None
                if i < t.n_d - 1 and cfg.loss.adv_weight > 0:  # adv_weight 0 (the L1 baseline): no D
                    engine.d_step(gan, cfg, clip, step, reduce, actions)
            d_out, g_out = engine.train_step(gan, cfg, clip, step, reduce, actions)
            engine.update_ema(gan, cfg, step)
            step += 1
            bar.update(1)
            # train.minutes: a fixed CPU budget (same minutes for two models); every rank stops
            # at the same step, the one that ran out (one all-reduce of the flag)
            out_of_time = deadline is not None and bool(distributed.count_across_ranks(
                torch.tensor([time.perf_counter() > deadline])).item())
            done = step >= t.steps or out_of_time
            if d.main and (step % t.log_every == 0 or done):
                now = time.perf_counter()
                scalars = {k: float(v) for k, v in {**d_out, **g_out}.items()}
                scalars.update(lr_g=gan.opt_g.param_groups[0]["lr"], lr_d=gan.opt_d.param_groups[0]["lr"],
                               steps_per_s=(step - tic_step) / max(now - tic, 1e-9))
                tic, tic_step = now, step
                for k, v in scalars.items():
                    writer.add_scalar(f"train/{k}", v, step)
                log.write({"step": step, **scalars})
                bar.set_postfix(d=f"{scalars.get('d_total', 0):.3f}", g=f"{scalars['g_total']:.3f}",
                                it_s=f"{scalars['steps_per_s']:.2f}")
            if step % t.save_every == 0 or done or kept(step):  # a kept step is saved, whatever save_every
                save(step)
            if d.main and (step % t.sample_every == 0 or done):
                v = validate(gan, cfg, val_ds, step, writer, log) if len(val_ds) else {}
                if v:
                    tqdm.write(f"step {step}: val PSNR {v['val/psnr']:.2f} dB (copy-last "
                               f"{v['val/psnr_copy_last']:.2f}), SSIM {v['val/ssim']:.3f} "
                               f"(copy-last {v['val/ssim_copy_last']:.3f})")
    finally:
        bar.close()
        if writer is not None:
            writer.close()
            log.close()
    if d.main:
        budget = f" (train.minutes={t.minutes:g} ran out at step {step})" if step < t.steps else ""
        print(f"done: {run / 'checkpoints' / 'last.pt'}{budget}")
    return run


def resolve_config(args) -> Config:
    """--resume takes the config stored in the checkpoint (overrides still apply, e.g. more steps)."""
    if not args.resume:
        return load_config(args.config, args.overrides)
    # --resume continues RUN in place; a run.dir= or train.resume= beside it would be overridden
    # below, and RUN extended while the user expected a new run (or another checkpoint).
    clash = [o for o in args.overrides if o.split("=", 1)[0].strip().lstrip("+~") in ("run.dir", "train.resume")]
    if clash:
        raise ConfigError(f"--resume continues {args.resume} in place, in its own run.dir from its own "
                          f"checkpoint: drop {clash[0]!r}")
    p = Path(args.resume)
    ckpt = p / "checkpoints" / "last.pt" if p.is_dir() else p
    if not ckpt.exists():
        raise CheckpointError(f"{args.resume}: no checkpoint to resume from")
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    old = checkpoint_config(load_checkpoint(ckpt), ckpt)
    return load_config(args.config, [*args.overrides, f"run.dir={run}", f"train.resume={ckpt}"],
                       base=to_dict(old))


def main(argv: list[str] | None = None) -> int:
    from framegan.store import StoreError
    from framegan.video import VideoError

    ap = Parser(prog="python -m framegan.train", description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="YAML config (default: built-in defaults = configs/default.yaml)")
    ap.add_argument("--resume", metavar="RUN_DIR|CKPT", help="continue a run from its last checkpoint")
    add_threads(ap)
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.steps=200")

    def work():
        args = ap.parse_args(argv)
        set_threads(args.threads)
        train(resolve_config(args))

    return run_main(work, (ConfigError, CheckpointError, StoreError, VideoError, engine.NonFiniteLoss,
                           distributed.PeerFailed),
                    interrupted="interrupted: the last checkpoint is intact; resume with --resume RUN_DIR")


if __name__ == "__main__":
    sys.exit(main())
