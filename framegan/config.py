"""Typed configuration: one dataclass tree, YAML files in configs/, ``key=value`` overrides.

Load order: dataclass defaults <- YAML file (``--config``) <- command-line ``key=value``.
OmegaConf does the merging and type checking (unknown keys and wrong types raise); ``validate``
then rejects impossible combinations. The result is a tree of plain dataclass instances.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration problem, reported to the user as one line."""


class ZDist(str, enum.Enum):
    gaussian = "gaussian"
    uniform = "uniform"


class ZInject(str, enum.Enum):
    concat = "concat"      # z tiled as extra input channels (and at the bottleneck)
    add = "add"            # projected z added to the bottleneck features
    modulate = "modulate"  # z -> per-channel scale/shift of decoder features (FiLM / StyleGAN-ish)


class GOutput(str, enum.Enum):
    direct = "direct"        # tanh(head): the frame drawn from scratch
    residual = "residual"    # tanh(atanh(last) + head): a change to the last context frame
    composite = "composite"  # a mask picks where G repaints the last context frame


class DBackbone(str, enum.Enum):
    cnn = "cnn"
    transformer = "transformer"


class AdvType(str, enum.Enum):
    hinge = "hinge"
    nonsaturating = "nonsaturating"
    lsgan = "lsgan"


class Precision(str, enum.Enum):
    auto = "auto"  # bf16 autocast on CPUs that have it and on CUDA; fp32 elsewhere
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"  # CUDA only (uses a GradScaler)


@dataclass
class DataConfig:
    root: str = "data/sample"       # frame store to train on; data/sample is generated on first use
    context: int = 4                # K: past frames the generator sees
    horizon: int = 1                # future frames per training window; G is unrolled over them (1 = next frame)
    stride: int = 1                 # step between window starts inside a segment
    val_fraction: float = 0.1       # share of segments (or segment tails) held out for validation
    augment: bool = False           # random horizontal flips of whole windows, drawn from (seed, rank, batch number)
    key_change_repeat: int = 1      # training windows where a key G sees changes are listed this many times
    num_workers: int = 0            # DataLoader workers (0 = load in the training process); results do not depend on it


@dataclass
class ModelConfig:
    width: int = 16                 # base channel count of G (doubles per level, capped at 8x)
    depth: int = 3                  # U-Net levels; H and W must be divisible by 2**depth
    z_dim: int = 0                  # continuous noise size (z_dist); 0 and z_classes 0 = deterministic G
    z_classes: int = 2              # discrete noise: a uniform one-hot over this many classes (futures), after z
    z_dist: ZDist = ZDist.gaussian  # distribution z is drawn from
    z_inject: ZInject = ZInject.modulate  # how z (and the action) enters G
    actions: int = -1               # actions G and D are conditioned on: -1 = auto (the store's count), 0 = none
    action_history: int = 2         # keys G and D see per step: the last one pressed and the L-1 before it
    inverse: bool = True            # with z_classes: also train q(class | context, next frame) (latent actions)
    output: GOutput = GOutput.composite  # how G's head makes the frame from the last context frame
    copy_frames: int = -1           # composite: newest context frames G may copy a pixel from (-1 = all)
    d_backbone: DBackbone = DBackbone.cnn  # temporal discriminator family
    d_width: int = 16               # base channel count of D (16: a 1.25x faster step than 32, no worse per CPU minute)
    d_depth: int = 3                # strided stages in the CNN D (PatchGAN receptive field)
    d_spectral_norm: bool = True    # spectral norm on D's convs / linears
    d_motion: bool = False          # CNN D also sees candidate - last context frame (README: alive on real footage)
    d_patch: int = 8                # transformer D: patch size in pixels
    d_layers: int = 2               # transformer D: number of blocks
    d_heads: int = 4                # transformer D: attention heads


@dataclass
class LossConfig:
    adv_type: AdvType = AdvType.hinge  # adversarial objective (D and G sides)
    adv_weight: float = 0.1         # 0 = the plain L1/L2 regression baseline (1.0 drew noise: README)
    l1_weight: float = 1.0          # reconstruction L1
    l2_weight: float = 0.0          # reconstruction L2
    gdl_weight: float = 0.0         # gradient difference loss (Mathieu et al. 2016)
    gdl_alpha: float = 1.0          # GDL exponent
    motion_weight: float = 20.0     # extra reconstruction weight on pixels that change (0 = off)
    adv_motion_weight: float = 20.0  # extra weight of D's patches where something moves, both phases (0 = off)
    variety_k: int = 2              # reconstruction on the best of k samples (Social GAN); 1 = off
    variety_relax: float = 0.5      # weight of the other k-1 samples' reconstruction (relaxed winner-takes-all)
    variety_relax_steps: int = 800  # > 0: the relax weight decays linearly over these steps (evolving WTA) ...
    variety_relax_end: float = 0.1  # ... to this floor, which keeps a class that never wins anchored
    variety_relax_agree: float = 0.1  # > 0: the losers' pull only where they agree with the winner within this
    r1_gamma: float = 0.0           # R1 penalty on real pairs (0 = off)
    r1_every: int = 16              # lazy R1: apply every N D steps, scaled by N
    wrong_context_weight: float = 1.0  # weight of real-frame/wrong-context negatives in D's loss
    wrong_action_weight: float = 1.0  # weight of real-frame/wrong-action negatives in D's loss (actions > 0)
    balance_negatives: bool = False  # D's negative terms (fake, wrong context, wrong key) share one unit of weight
    diversity_weight: float = 0.0   # DSGAN diversity-sensitive term (0 = off)
    diversity_cap: float = 1.0      # clamp of the diversity ratio so it cannot run away


@dataclass
class TrainConfig:
    steps: int = 1000               # G steps
    minutes: float = 0.0            # > 0: also stop (and save) after this many minutes of this process's training
    batch_size: int = 16            # windows per step
    lr_g: float = 2e-4              # generator Adam learning rate
    lr_d: float = 4e-4              # discriminator Adam learning rate (TTUR: 2x G's)
    beta1: float = 0.5              # Adam beta1 (GAN practice)
    beta2: float = 0.999            # Adam beta2
    n_d: int = 1                    # D steps per G step
    ema_decay: float = 0.999        # EMA of G's weights (samples, rollout, evaluation); ramped up early
    seed: int = 0                   # global seed, 0 .. 2**31-1 (per-rank offset under torchrun)
    precision: Precision = Precision.auto  # autocast dtype
    channels_last: bool = False     # channels_last for convs (slower at width 16 with bf16 on CPU; try on GPU)
    compile: bool = False           # torch.compile G and D
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    deterministic: bool = False     # torch deterministic algorithms (bitwise resume on CPU)
    log_every: int = 25             # scalars to TensorBoard + metrics.jsonl every N steps
    sample_every: int = 250         # image grid, rollout video and validation every N steps
    save_every: int = 250           # checkpoints/last.pt every N steps
    keep_every: int = 0             # also keep checkpoints/step_XXXXXXX.pt every N steps (0 = never)
    val_batches: int = 4            # validation batches per evaluation
    video_frames: int = 8           # rollout length of the TensorBoard video
    resume: str = "auto"            # auto (run.dir's last.pt), never (refused if it exists), PATH; same computation


@dataclass
class RunConfig:
    name: str = ""                  # run name (default: the config file's stem)
    dir: str = ""                   # run directory (default: runs/<name>-<timestamp>)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> Config:
    """Defaults <- ``base`` (e.g. a checkpoint's config) <- YAML ``path`` <- ``overrides``
    ("a.b=value"); returns a validated ``Config``."""
    layers = [OmegaConf.structured(Config)]
    try:
        if base is not None:
            layers.append(OmegaConf.create(base))
        if path is not None:
            p = Path(path)
            layers.append(_load_yaml(p))
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"override must look like key=value: {bad[0]!r}")
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers)
        cfg: Config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        # OmegaConf messages are multi-line with full_key context; keep the first line.
        raise ConfigError(str(e).splitlines()[0] + _key_hint(e)) from None
    if not cfg.run.name and path is not None:
        cfg.run.name = Path(path).stem
    validate(cfg)
    return cfg


def _load_yaml(p: Path):
    """A YAML config file; a syntax error is one line naming the file, line and column."""
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        layer = OmegaConf.load(p)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        raise ConfigError(f"{where}: invalid YAML: {e.problem or e.context}") from None
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{p}: not a readable YAML config ({detail})") from None
    if not isinstance(layer, DictConfig):
        raise ConfigError(f"{p}: a config must be a mapping of sections (data:, model:, loss:, train:, run:)")
    return layer


def _key_hint(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    return f" (key: {key})" if key and str(key) not in str(e).splitlines()[0] else ""


def validate(cfg: Config) -> None:
    """Reject combinations that type checking cannot see."""
    d, m, lo, t = cfg.data, cfg.model, cfg.loss, cfg.train

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)

    # nan passes every comparison below as False and inf most of them as True: neither is a setting
    for section in (d, m, lo, t):
        for f in dataclasses.fields(section):
            v = getattr(section, f.name)
            name = f"{type(section).__name__.removesuffix('Config').lower()}.{f.name}"
            need(not isinstance(v, float) or math.isfinite(v), f"{name} must be a finite number, got {v}")
    need(d.context >= 1, f"data.context must be >= 1, got {d.context}")
    need(d.horizon >= 1, f"data.horizon must be >= 1, got {d.horizon}")
    need(d.stride >= 1, f"data.stride must be >= 1, got {d.stride}")
    need(d.key_change_repeat >= 1, f"data.key_change_repeat must be >= 1, got {d.key_change_repeat}")
    need(0.0 <= d.val_fraction < 1.0, f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
    need(d.num_workers >= 0, f"data.num_workers must be >= 0, got {d.num_workers}")
    need(m.width >= 1 and m.d_width >= 1, "model.width and model.d_width must be >= 1")
    need(1 <= m.depth <= 6, f"model.depth must be in 1..6, got {m.depth}")
    need(1 <= m.d_depth <= 6, f"model.d_depth must be in 1..6, got {m.d_depth}")
    need(m.z_dim >= 0, f"model.z_dim must be >= 0, got {m.z_dim}")
    need(m.z_classes == 0 or m.z_classes >= 2, f"model.z_classes must be 0 or >= 2, got {m.z_classes}")
    need(m.actions >= -1, f"model.actions must be -1 (auto), 0 (none) or a count, got {m.actions}")
    need(m.copy_frames == -1 or 1 <= m.copy_frames <= d.context,
         f"model.copy_frames must be -1 (all) or in 1..data.context ({d.context}), got {m.copy_frames}")
    need(m.action_history >= 1, f"model.action_history must be >= 1, got {m.action_history}")
    # (with model.actions=-1, train.resolve_actions checks this once the store says whether it has keys)
    need(m.actions <= 0 or m.action_history <= d.context,
         f"model.action_history must be in 1..data.context ({d.context}), got {m.action_history}")
    need(not (d.augment and m.actions > 0),
         "data.augment (horizontal flips) would swap the meaning of left/right keys: not with model.actions")
    need(m.d_patch >= 1 and m.d_layers >= 1 and m.d_heads >= 1, "model.d_patch/d_layers/d_heads must be >= 1")
    # (the transformer D is 4 * d_width wide: nets/discriminator.py; frame-size checks: train.check_frame_size)
    need(m.d_backbone != DBackbone.transformer or 4 * m.d_width % m.d_heads == 0,
         f"model.d_heads={m.d_heads} must divide the transformer D's width 4 * model.d_width = {4 * m.d_width}")
    need(not m.d_motion or m.d_backbone == DBackbone.cnn, "model.d_motion needs model.d_backbone=cnn")
    for k in ("adv_weight", "l1_weight", "l2_weight", "gdl_weight", "motion_weight", "adv_motion_weight", "r1_gamma",
              "wrong_context_weight", "wrong_action_weight", "diversity_weight", "variety_relax"):
        need(getattr(lo, k) >= 0, f"loss.{k} must be >= 0, got {getattr(lo, k)}")
    need(lo.variety_k >= 1, f"loss.variety_k must be >= 1, got {lo.variety_k}")
    need(lo.variety_relax < 1, f"loss.variety_relax must be < 1 (1 = plain mean over k), got {lo.variety_relax}")
    need(lo.variety_relax_agree >= 0, f"loss.variety_relax_agree must be >= 0, got {lo.variety_relax_agree}")
    need(lo.variety_relax_steps >= 0, f"loss.variety_relax_steps must be >= 0, got {lo.variety_relax_steps}")
    need(0 <= lo.variety_relax_end <= lo.variety_relax,
         f"loss.variety_relax_end must be in [0, loss.variety_relax], got {lo.variety_relax_end}")
    need(lo.gdl_alpha > 0, f"loss.gdl_alpha must be > 0, got {lo.gdl_alpha}")
    need(lo.r1_every >= 1, f"loss.r1_every must be >= 1, got {lo.r1_every}")
    need(lo.diversity_cap > 0, f"loss.diversity_cap must be > 0, got {lo.diversity_cap}")
    need(lo.adv_weight > 0 or lo.l1_weight + lo.l2_weight + lo.gdl_weight > 0,
         "nothing to train: loss.adv_weight and every reconstruction weight are 0")
    noise = m.z_dim + m.z_classes
    need(noise > 0 or lo.diversity_weight == 0,
         "loss.diversity_weight > 0 needs model.z_dim or model.z_classes > 0 (a deterministic G has no diversity)")
    need(noise > 0 or lo.variety_k == 1,
         "loss.variety_k > 1 needs model.z_dim or model.z_classes > 0 (k samples of a deterministic G are equal)")
    need(t.steps >= 1 and t.batch_size >= 1 and t.n_d >= 1, "train.steps, batch_size, n_d must be >= 1")
    need(t.lr_g > 0 and t.lr_d > 0, "train.lr_g and train.lr_d must be > 0")
    need(0.0 <= t.ema_decay < 1.0, f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
    for k in ("beta1", "beta2"):  # Adam's own range
        need(0.0 <= getattr(t, k) < 1.0, f"train.{k} must be in [0, 1), got {getattr(t, k)}")
    # Headroom below numpy's 2**32 limit: train.py adds rank and epoch offsets to the seed.
    need(0 <= t.seed < 2 ** 31, f"train.seed must be in 0..{2 ** 31 - 1}, got {t.seed}")
    for k in ("log_every", "sample_every", "save_every", "val_batches", "video_frames"):
        need(getattr(t, k) >= 1, f"train.{k} must be >= 1, got {getattr(t, k)}")
    need(t.keep_every >= 0, f"train.keep_every must be >= 0, got {t.keep_every}")
    need(t.minutes >= 0, f"train.minutes must be >= 0, got {t.minutes}")
    need(t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"),
         f"train.device must be auto, cpu or cuda[:N], got {t.device!r}")
    need(t.precision != Precision.fp16 or t.device != "cpu", "train.precision=fp16 needs CUDA")


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (written into every run directory and checkpoint)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: Config) -> dict:
    """Plain-container form (str/int/float/bool only), safe for ``torch.load(weights_only=True)``."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


def from_dict(d: dict) -> Config:
    """Inverse of ``to_dict`` (with the same type checking as ``load_config``). ``d`` comes from a
    file someone else may have written (a checkpoint), so its strings are data: one holding an
    OmegaConf interpolation (``${oc.env:HOME}``, ``${...}``) is refused, never resolved."""
    for key, value in _leaves(d):
        if isinstance(value, str) and "${" in value:
            raise ConfigError(f"{key}={value!r} is an interpolation; refused (a stored config must not "
                              f"read this machine's environment)")
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), d))
    except OmegaConfBaseException as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    validate(cfg)
    return cfg


def _leaves(d, prefix: str = ""):
    """(dotted key, value) of every non-container value in nested dicts / lists."""
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, (list, tuple)) else None
    if items is None:
        yield prefix.rstrip("."), d
        return
    for k, v in items:
        yield from _leaves(v, f"{prefix}{k}.")


# Keys a resumed run may change: how long it runs, what it logs, where and on what it runs; not
# what it computes. Resuming with any other key changed is refused (``resume_conflicts``), so a
# run directory always holds one run that a resume reproduces.
RESUME_MAY_CHANGE = ("train.steps", "train.minutes", "train.log_every", "train.sample_every", "train.save_every",
                     "train.keep_every", "train.val_batches", "train.video_frames", "train.resume",
                     "train.device", "train.compile", "train.channels_last", "train.deterministic",
                     "data.num_workers", "run.name", "run.dir")


def resume_conflicts(old: Config, new: Config) -> list[tuple[str, object, object]]:
    """``(key, old value, new value)`` for every key outside ``RESUME_MAY_CHANGE`` that differs."""
    a, b = dict(_leaves(to_dict(old))), dict(_leaves(to_dict(new)))
    return [(k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys())
            if k not in RESUME_MAY_CHANGE and a.get(k) != b.get(k)]
