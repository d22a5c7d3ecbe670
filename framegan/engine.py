"""One training step of the conditional GAN, in two named phases (StyleGAN2-ADA style).

Tensors are ``(B, T, C, H, W)`` in [-1, 1]; a training window has ``T = K + horizon``: the
context ``x = clip[:, :K]`` and the targets ``clip[:, K:]``. ``actions`` ``(B, T)`` hold the index
of the key pressed after each frame (``None`` for a model without action input): target 1 follows
``actions[:, K-1]``.

* ``draw``: G's k samples per context, with their graph (``train_step`` runs it first, once,
  for both phases below).
* ``d_step``: G frozen. D learns real (context, action, next frame) triples -> high; generated
  frames, real frames under another sample's context (wrong-context negatives, which make D
  *temporal*) and real frames under a key that was not pressed (wrong-action negatives) -> low.
  Lazy R1 on real pairs.
* ``g_step``: D frozen. G learns to raise D's score on its samples, plus reconstruction
  (motion-weighted L1/L2 on the best of k samples), GDL and a diversity term.
* ``q_step`` (inside ``g_step``, with discrete noise): the inverse model learns which class won.

Both phases freeze the other network with ``requires_grad_(False)`` rather than ``detach`` tricks,
so a test can check that G's parameters get gradient *through* D while D's get none.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
from einops import rearrange, reduce, repeat

from framegan import distributed, losses
from framegan.config import Config, LossConfig


@dataclass
class GAN:
    """Everything a step updates. ``G_ema`` is the weight average used for every sample shown."""
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    z_gen: torch.Generator           # dedicated noise stream, saved in checkpoints for exact resume
    autocast_dtype: torch.dtype | None
    device: torch.device
    Q: torch.nn.Module | None = None        # inverse model q(class | context, frame), z_classes > 0
    opt_q: torch.optim.Optimizer | None = None


def build_gan(cfg: Config, G: torch.nn.Module, D: torch.nn.Module, device: torch.device,
              autocast_dtype: torch.dtype | None, Q: torch.nn.Module | None = None) -> GAN:
    t = cfg.train
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))
    # A plain classifier: Adam's default betas, G's learning rate.
    opt_q = torch.optim.Adam(Q.parameters(), lr=t.lr_g) if Q is not None else None
    # The scaler only does something for fp16 (CUDA); for bf16/fp32 it is a pass-through.
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
    z_gen = torch.Generator(device).manual_seed(t.seed + 1)
    return GAN(G, D, G_ema, opt_g, opt_d, scaler, z_gen, autocast_dtype, device, Q, opt_q)


def autocast(gan: GAN):
    if gan.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(gan.device.type, dtype=gan.autocast_dtype)


def split_clip(clip: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K+1.., C, H, W) -> context (B, K, C, H, W), next frame (B, C, H, W)."""
    return clip[:, :K], clip[:, K]


def step_actions(actions: torch.Tensor | None, K: int, t: int = 0, history: int = 1) -> torch.Tensor | None:
    """The keys that lead to target ``t`` (0-based) of windows with actions ``(B, T)``: the one
    pressed after the frame before it ``(B,)``, or with ``history`` L > 1 the last L ``(B, L)``,
    oldest first (``model.action_history``; G and D take either)."""
    if actions is None:
        return None
    return actions[:, K - 1 + t] if history == 1 else actions[:, K - history + t:K + t]


def wrong_actions(a: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """For each key in ``a`` ``(B,)`` another one of the ``n``, uniformly: ``(a + U{1..n-1}) mod
    n``. A key history ``(B, L)`` gets one shift per row: every key wrong, but a held key stays
    held, so D cannot tell a wrong history by its keys alone (recorded keys mostly repeat)."""
    shift = torch.randint(1, n, a.shape[:1], device=a.device, generator=generator)
    return (a + (shift if a.ndim == 1 else shift[:, None])) % n


def sample_z(gan: GAN, n: int, classes: torch.Tensor | None = None) -> torch.Tensor:
    G = unwrap(gan.G)
    return G.sample_z(n, device=gan.device, generator=gan.z_gen, classes=classes)


def unwrap(m: torch.nn.Module) -> torch.nn.Module:
    return getattr(m, "_orig_mod", m)  # torch.compile wrapper -> module (for attributes)


def d_step(gan: GAN, cfg: Config, clip: torch.Tensor, step: int, reduce_grads=None,
           actions: torch.Tensor | None = None, draws: Draws | None = None) -> dict:
    """Discriminator phase. Returns detached scalars for logging. G's samples are one per
    context: of ``draws`` (the G phase's, made for this ``clip``; see ``train_step``) where
    given, else drawn here with noise of its own."""
    lc = cfg.loss
    ctx, real = split_clip(clip, cfg.data.context)
    a = step_actions(actions, cfg.data.context, history=unwrap(gan.G).action_history)
    B, n_act = ctx.shape[0], unwrap(gan.D).num_actions
    gan.D.requires_grad_(True)
    if draws is None:
        gan.G.requires_grad_(False)
        with torch.no_grad(), autocast(gan):
            fake = gan.G(ctx, sample_z(gan, B), a)
    else:
        fake = one_per_context(gan, draws, B)
    # Negatives beside G's samples. Wrong context: each real frame under the next sample's context
    # (and key); skipped with B == 1, where there is no other context. Wrong action: each real
    # frame under a key that was not pressed, so D must check that the frame follows the key.
    # Each kind: (name, the context row of each pair, frame, key).
    rows = torch.arange(B, device=ctx.device)
    kinds = [("real", rows, real, a), ("fake", rows, fake, a)]
    if lc.wrong_context_weight > 0 and B > 1:  # row b under context b - 1, as ctx.roll(1, 0)
        kinds.append(("wrong", rows.roll(1), real, None if a is None else a.roll(1, dims=0)))
    if lc.wrong_action_weight > 0 and n_act > 1:
        kinds.append(("wrong_action", rows, real, wrong_actions(a, n_act, gan.z_gen)))
    # One D call on the stacked pairs instead of one per kind: same values (D has no batch
    # statistics), fewer and larger convolutions; each context's share of D's first layer is
    # computed once for all its pairs (``pair``).
    with autocast(gan):
        stacked = gan.D(ctx, torch.cat([k[2].to(ctx.dtype) for k in kinds]),
                        None if a is None else torch.cat([k[3] for k in kinds]),
                        pair=torch.cat([k[1] for k in kinds]))
    logits = dict(zip([k[0] for k in kinds], stacked.float().split(B)))
    w_real = w_fake = None
    if lc.adv_motion_weight > 0:  # focus D on the patches where the scene moves
        patches, last = logits["real"].shape[-2:], ctx[:, -1]
        w_real = losses.patch_weight(last, [real], lc.adv_motion_weight, patches)
        w_fake = losses.patch_weight(last, [real, fake], lc.adv_motion_weight, patches)
    terms = {
        "d_real": losses.d_real_loss(logits["real"], lc.adv_type, w_real),
        "d_fake": losses.d_fake_loss(logits["fake"], lc.adv_type, w_fake),
    }
    if "wrong" in logits:
        terms["d_wrong"] = lc.wrong_context_weight * losses.d_fake_loss(logits["wrong"], lc.adv_type)
    if "wrong_action" in logits:
        # Weighted like the real pair: the key's effect shows where the real frame moves.
        terms["d_wrong_action"] = lc.wrong_action_weight * losses.d_fake_loss(
            logits["wrong_action"], lc.adv_type, w_real)
    if lc.balance_negatives:
        # The negatives together weigh as much as the real pair. Summed, a D that cannot yet
        # tell G's samples and wrong-key pairs from real ones scores everything -1 (the hinge
        # optimum with three negatives per positive) and stays there: raising the real score to
        # learn the wrong contexts would raise its indistinguishable twins as well, at a net loss.
        share = 1 + sum(w for k, w in (("d_wrong", lc.wrong_context_weight),
                                       ("d_wrong_action", lc.wrong_action_weight)) if k in terms)
        terms.update({k: v / share for k, v in terms.items() if k != "d_real"})
    # Lazy R1 (StyleGAN2): every r1_every steps, scaled by r1_every; in fp32 (double backward).
    if lc.r1_gamma > 0 and step % lc.r1_every == 0:
        ctx_r, real_r = ctx.detach().requires_grad_(True), real.detach().requires_grad_(True)
        r1 = losses.r1_penalty(gan.D(ctx_r, real_r, a).float(), [ctx_r, real_r])
        terms["d_r1"] = (lc.r1_gamma / 2) * lc.r1_every * r1
    total, gnorm = optimize(gan, gan.D, gan.opt_d, terms, step, "D", reduce_grads)
    out = {k: v.detach() for k, v in terms.items()}
    out.update(d_total=total.detach(), gnorm_d=gnorm.detach())
    out.update({f"score_{name}": v.detach().mean() for name, v in logits.items()})
    return out


@dataclass
class Draws:
    """G's k draws per context for the G phase, with their graph, stacked sample-major (row
    s * B + b is draw s of context b). Made before the D phase (``train_step``), which trains on
    one of them per context instead of running G again (pix2pix's order: G draws once, D learns,
    then G learns through the updated D)."""
    z: torch.Tensor
    classes: torch.Tensor | None       # (k * B,) the class of each draw, or None
    preds: list[torch.Tensor]          # one (k * B, C, H, W) per step of the window's horizon
    ctx_k: torch.Tensor
    futures_k: torch.Tensor
    actions_k: torch.Tensor | None


def draw(gan: GAN, cfg: Config, clip: torch.Tensor, actions: torch.Tensor | None = None) -> Draws:
    """G's forward pass of the G phase: k samples per context (``loss.variety_k``)."""
    lc, K = cfg.loss, cfg.data.context
    ctx, horizon = clip[:, :K], clip.shape[1] - K
    B = ctx.shape[0]
    k, L = lc.variety_k, unwrap(gan.G).action_history
    gan.G.requires_grad_(True)
    # k noise draws per context, stacked sample-major: index = s * B + b.
    ctx_k = repeat(ctx, "b t c h w -> (s b) t c h w", s=k)
    futures_k = repeat(clip[:, K:], "b t c h w -> (s b) t c h w", s=k)
    actions_k = None if actions is None else repeat(actions, "b t -> (s b) t", s=k)
    # With discrete noise, sample s gets class s mod z_classes: every class competes for the
    # best-of-k win on every context, so each class specialises on one future (multiple-choice
    # learning) instead of a class that happens not to be drawn never being corrected.
    n_cls = unwrap(gan.G).z_classes
    classes = torch.arange(k * B, device=gan.device) // B % n_cls if n_cls and k > 1 else None
    z = sample_z(gan, k * B, classes)
    with autocast(gan):
        fake = gan.G(ctx, z, step_actions(actions_k, K, history=L), repeats=k)  # k draws, one encoding
        # Windows of data.horizon > 1 frames: G goes on from its own predictions with the same z,
        # as in a rollout, and the reconstruction below covers every step (backpropagated through
        # the fed-back frames): next-frame training alone never shows G a context it drew itself
        # (exposure bias). Not needed on the fork experiment, at 1.6x the step time (README).
        preds, x = [fake], ctx_k
        for t in range(1, horizon):
            x = torch.cat([x[:, 1:], preds[-1][:, None].to(x.dtype)], dim=1)
            preds.append(gan.G(x, z, step_actions(actions_k, K, t, L)))
    return Draws(z, classes, preds, ctx_k, futures_k, actions_k)


def one_per_context(gan: GAN, draws: Draws, B: int) -> torch.Tensor:
    """``(B, C, H, W)`` detached: one of each context's k first-step draws, picked uniformly, as
    D's fake. With k = z_classes (the defaults, the three-way recipe) each class is as likely as
    a fresh draw's would be."""
    k = draws.preds[0].shape[0] // B
    pick = torch.randint(k, (B,), device=gan.device, generator=gan.z_gen)
    return draws.preds[0][pick * B + torch.arange(B, device=gan.device)].detach()


def train_step(gan: GAN, cfg: Config, clip: torch.Tensor, step: int, reduce_grads=None,
               actions: torch.Tensor | None = None) -> tuple[dict, dict]:
    """One D phase and one G phase on the same windows, G drawing once for both: (D's scalars,
    G's scalars). Without the adversary (``loss.adv_weight`` 0, the regression baseline) no D."""
    draws = draw(gan, cfg, clip, actions)
    d_out = d_step(gan, cfg, clip, step, reduce_grads, actions, draws) if cfg.loss.adv_weight > 0 else {}
    return d_out, g_step(gan, cfg, clip, step, reduce_grads, actions, draws)


def g_step(gan: GAN, cfg: Config, clip: torch.Tensor, step: int, reduce_grads=None,
           actions: torch.Tensor | None = None, draws: Draws | None = None) -> dict:
    """Generator phase: k samples per context (``draws``, made here if not given); adversarial +
    best-of-k reconstruction + GDL + diversity."""
    lc, K = cfg.loss, cfg.data.context
    ctx = clip[:, :K]
    B = ctx.shape[0]
    k, L = lc.variety_k, unwrap(gan.G).action_history
    if draws is None:
        draws = draw(gan, cfg, clip, actions)
    gan.D.requires_grad_(False)
    z, classes, preds, ctx_k, futures_k, actions_k = (draws.z, draws.classes, draws.preds, draws.ctx_k,
                                                      draws.futures_k, draws.actions_k)
    real_k, n_cls = futures_k[:, 0], unwrap(gan.G).z_classes
    fake_logits = None
    if lc.adv_weight > 0:
        with autocast(gan):
            # The k draws of a context share its part of D's first layer, as in G's encoder.
            fake_logits = gan.D(ctx, preds[0], step_actions(actions_k, K, history=L),
                                pair=torch.arange(k * B, device=ctx.device) % B).float()
    fake = preds[0].float()
    terms = {}
    if lc.adv_weight > 0:
        w_adv = (losses.patch_weight(ctx_k[:, -1], [real_k, fake], lc.adv_motion_weight, fake_logits.shape[-2:])
                 if lc.adv_motion_weight > 0 else None)
        terms["g_adv"] = lc.adv_weight * losses.g_adversarial(fake_logits, lc.adv_type, w_adv)
    if lc.l1_weight > 0 or lc.l2_weight > 0:
        per_step, weights = [], []  # per-sample reconstruction (k * B,) and pixel weight of each step
        for t, pred in enumerate(preds):
            target, last = futures_k[:, t], ctx_k[:, -1] if t == 0 else futures_k[:, t - 1]
            weights.append(losses.motion_weight(last, target, lc.motion_weight) if lc.motion_weight > 0 else None)
            per_step.append(reconstruction(lc, pred, target, weights[-1]))
        per = rearrange(torch.stack(per_step).mean(0), "(s b) -> s b", s=k)
        win = per.detach().argmin(0)  # (B,) the sample closest to the truth, per context
        # Variety loss (Social GAN): only the closest of the k samples is pulled to the truth,
        # so the others stay free to be the *other* future instead of all collapsing to the mean.
        # The relax term pulls the others on the first step alone (see losses.best_of_k), and
        # only where they draw what the winner draws (loss.variety_relax_agree, agreement_mask).
        committed = None
        if classes is not None:
            sample_class = rearrange(classes, "(s b) -> s b", s=k)
            winners = sample_class.gather(0, win[None])[0]
            # How decisive each win was: 0 where the samples tie (a step every class predicts
            # alike, which most steps of most footage are), 1 where the runner-up was far off.
            best, second = per.detach().topk(2, dim=0, largest=False).values
            decisive = ((second - best) / (second + 1e-8)).clamp(0, 1)
            # After the relax decay, a class that won a decisive context in this batch draws a
            # future of its own, so where it loses it is drawing that future, not drifting (see
            # agreement_mask). During the decay every class is taken to be one: the classes are
            # still becoming distinct, and a full pull then keeps them alike (small_fast fork).
            if step >= lc.variety_relax_steps:
                committed = (torch.bincount(winners[decisive > DECISIVE_WIN], minlength=n_cls) > 0)[sample_class]
        relax = relax_weight(cfg, step)
        relax_on = per_step[0]
        if k > 1 and lc.variety_relax_agree > 0 and relax > 0:
            mask = agreement_mask(preds[0], win, k, lc.variety_relax_agree, committed)
            relax_on = reconstruction(lc, preds[0], futures_k[:, 0], mask if weights[0] is None else weights[0] * mask)
        terms["g_rec"] = (losses.best_of_k(per, relax, rearrange(relax_on, "(s b) -> s b", s=k))
                          if k > 1 else per.mean())
    if lc.gdl_weight > 0:
        terms["g_gdl"] = lc.gdl_weight * losses.gdl(fake, real_k, lc.gdl_alpha)
    if lc.diversity_weight > 0:
        if k > 1:
            f1, f2, z1, z2 = fake[:B], fake[B:2 * B], z[:B], z[B:2 * B]
        else:  # a second draw just for the diversity term
            z2 = sample_z(gan, B)
            with autocast(gan):
                f2 = gan.G(ctx, z2, step_actions(actions, K, history=L)).float()
            f1, z1 = fake, z
        terms["g_div"] = lc.diversity_weight * losses.diversity(f1, f2, z1, z2, lc.diversity_cap)
    total, gnorm = optimize(gan, gan.G, gan.opt_g, terms, step, "G", reduce_grads)
    gan.D.requires_grad_(True)
    out = {k_: v.detach() for k_, v in terms.items()}
    out.update(g_total=total.detach(), gnorm_g=gnorm.detach())
    if gan.Q is not None and classes is not None and "g_rec" in terms:
        out.update(q_step(gan, ctx, clip[:, K], winners, decisive, step, reduce_grads))
    return out


DECISIVE_WIN = 0.5  # a win counts as decisive where the runner-up's loss is over twice the winner's


def reconstruction(lc: LossConfig, pred: torch.Tensor, target: torch.Tensor,
                   weight: torch.Tensor | None) -> torch.Tensor:
    """``(N,)`` per-sample reconstruction loss: weighted L1 and L2 as ``loss.l1_weight`` and
    ``loss.l2_weight`` say, ``weight`` per pixel (or None)."""
    rec = torch.zeros(pred.shape[0], device=pred.device)
    if lc.l1_weight > 0:
        rec = rec + lc.l1_weight * losses.per_sample_l1(pred.float(), target, weight)
    if lc.l2_weight > 0:
        rec = rec + lc.l2_weight * losses.per_sample_l2(pred.float(), target, weight)
    return rec


def agreement_mask(first: torch.Tensor, win: torch.Tensor, k: int, threshold: float,
                   committed: torch.Tensor | None = None) -> torch.Tensor:
    """``(k * B, 1, H, W)`` float mask of the first-step pixels where each sample agrees with its
    context's winner ``win`` (B,) (every channel within ``threshold``, ``loss.variety_relax_agree``):
    where the relax term of ``losses.best_of_k`` pulls a losing sample to the truth.

    Why: at a fork the loser draws the other branch. Pulled to the truth everywhere, it is pulled
    to erase its own character and to draw the winner's, which left a faint copy of the other
    branch (10 % split frames on the `y` fork game with the 0.1 floor). Where loser and winner
    draw the same thing (the scene both keep, every step of a deterministic game) the pull stays.

    ``committed`` (k, B) bool, given after the relax decay: the samples whose class won a
    decisive context in the batch. The others are pulled everywhere, as without the mask: a class
    that never wins (one of the two on Ms. Pac-Man without keys) drew off-colour patches that
    stayed more than the threshold away from the winner's frame, where the mask had stopped
    pulling (its first step 32.7 dB PSNR against 37.0 pulled everywhere)."""
    first = rearrange(first.detach().float(), "(s b) c h w -> s b c h w", s=k)
    winner = first[win, torch.arange(first.shape[1], device=first.device)]
    agree = reduce((first - winner[None]).abs(), "s b c h w -> s b 1 h w", "max") <= threshold
    if committed is not None:
        agree = agree | ~rearrange(committed, "s b -> s b 1 1 1")
    return rearrange(agree.float(), "s b 1 h w -> (s b) 1 h w")


def relax_weight(cfg: Config, step: int) -> float:
    """The relax weight of best-of-k at ``step``. With ``loss.variety_relax_steps`` it decays
    linearly from ``variety_relax`` to ``variety_relax_end`` over those steps (evolving
    winner-takes-all, Makansi et al. 2019): early on every sample learns what all futures share
    (so no class is left untrained where it never wins); later the winner is pulled almost alone,
    so a class no longer keeps a faint copy of the branch it lost to. Measured on the varied fork
    game (fresh contexts, 1000 steps): a constant 0.5 gave 69.5 % sharp frames and 30.5 % split,
    the decay to 0 by step 800 98.4 % / 0 %. But decayed to 0 exactly, on footage where nearly
    every step has one future (Ms. Pac-Man without keys, ViZDoom) one class won nearly always
    and the other, no longer pulled, drifted (step-1 PSNR 25.2 vs 37.5 dB for the winning class
    on Ms. Pac-Man): the small floor ``variety_relax_end`` keeps it anchored. A step count, not a
    share of train.steps, so a resume with more steps keeps the schedule."""
    lc = cfg.loss
    if lc.variety_relax_steps <= 0:
        return lc.variety_relax
    left = max(0.0, 1.0 - step / lc.variety_relax_steps)
    return lc.variety_relax_end + (lc.variety_relax - lc.variety_relax_end) * left


def q_step(gan: GAN, ctx: torch.Tensor, real: torch.Tensor, winners: torch.Tensor, decisive: torch.Tensor,
           step: int, reduce_grads=None) -> dict:
    """Inverse-model phase: q(class | context, real next frame) learns the class whose sample won
    best-of-k on this window, i.e. the latent action that explains the real step. Each window
    counts by how ``decisive`` (0..1) its win was: where every class drew the same frame the
    winner is a coin toss, and on the fork game such ties (most windows) taught an unweighted q
    to answer one class for everything (measured: q gave class 1 for 100 % of real steps and
    for G's own class-0 samples)."""
    with autocast(gan):
        logits = gan.Q(ctx, real).float()
        prior = gan.Q.prior(ctx).float()
    ce = torch.nn.functional.cross_entropy(logits, winners, reduction="none")
    prior_ce = torch.nn.functional.cross_entropy(prior, winners, reduction="none")
    # The prior is weighted the same way: a tie's winner is a coin toss that the context cannot
    # predict, and learning it made the prior noisy. On the `default` fork game, counting every
    # window alike put 23 % of the fresh fork contexts outside odds of 0.25-0.75; weighted, 3 %
    # (mean 0.50). On Space Invaders the rare class gets 8 % instead of 12 % (it wins 10.5 %).
    w = decisive.sum().clamp(min=1e-8)
    terms = {"q_ce": (ce * decisive).sum() / w, "q_prior_ce": (prior_ce * decisive).sum() / w}
    optimize(gan, gan.Q, gan.opt_q, terms, step, "Q", reduce_grads)
    return {"q_ce": terms["q_ce"].detach(), "q_prior_ce": terms["q_prior_ce"].detach(),
            "q_acc": (logits.argmax(1) == winners).float().mean()}


def optimize(gan: GAN, net: torch.nn.Module, opt: torch.optim.Optimizer, terms: dict, step: int,
             phase: str, reduce_grads=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the loss terms, check them, backward, (all-reduce), step. Returns (total, grad norm)."""
    total = sum(terms.values())
    check_finite(total, terms, step, phase)
    opt.zero_grad(set_to_none=True)
    gan.scaler.scale(total).backward()
    if reduce_grads is not None:
        reduce_grads(net)
    gan.scaler.unscale_(opt)
    gnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), float("inf"))  # inf: measure only
    gan.scaler.step(opt)
    gan.scaler.update()
    return total, gnorm


@torch.no_grad()
def update_ema(gan: GAN, cfg: Config, step: int) -> None:
    """EMA of G's weights. The decay ramps up as (1 + step) / (10 + step) until it reaches
    ``ema_decay``, so a short CPU run averages over its recent past, not over its random start."""
    decay = min(cfg.train.ema_decay, (1 + step) / (10 + step))
    src = unwrap(gan.G).state_dict()
    for name, v in gan.G_ema.state_dict().items():
        if v.dtype.is_floating_point:
            v.lerp_(src[name], 1.0 - decay)
        else:
            v.copy_(src[name])


class NonFiniteLoss(RuntimeError):
    pass


def check_finite(total: torch.Tensor, terms: dict, step: int, phase: str) -> None:
    """Stop before the optimizer step, so the weights (and the last checkpoint) stay good. Under
    torchrun the ranks agree first (one all-reduce of the flags): a NaN on one rank stops every
    rank at the same step with the same message, instead of leaving the others waiting in the
    gradient all-reduce."""
    names = [*terms, "total"]
    flags = torch.stack([~torch.isfinite(v.detach()).all() for v in (*terms.values(), total)])
    counts = distributed.count_across_ranks(flags)
    if not counts.any():
        return
    bad = [n for n, c in zip(names, counts.tolist()) if c and n != "total"] or ["total"]
    world = distributed.world_size()
    where = f" (on {counts.max().item()} of {world} processes)" if world > 1 else ""
    raise NonFiniteLoss(f"non-finite loss at step {step} in the {phase} phase: term {', '.join(bad)}{where}")
