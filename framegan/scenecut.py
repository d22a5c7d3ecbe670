"""Scene-cut detection that keeps camera motion and screen flashes inside one scene.

Frames here are uint8 ``(H, W, 3)`` RGB, the extractor's output frames, fed one at a time in
video order (the model's ``(B, T, C, H, W)`` float tensors play no part).

A cut is a frame that the previous frame does not explain. Continuous footage may move between
two frames (a camera turn shifts the view, walking spreads it, sprites move) and may be tinted or
brightened as a whole (a damage flash, a fade: a blend toward one colour, i.e. one gain and a
per-channel offset). The tests, cheapest first (``SceneCuts.scores``):

1. Colour gate: mean absolute difference of 16x16 RGB thumbnails (0-1; the whole detector
   before, cutting above 0.05, which on VizDoom footage took turns and flashes for cuts). A
   frame under ``GATE`` is no cut and nothing else runs, so slow footage costs what it did.
2. Structure: the frame at 64x64, gray, band-passed (minus its Gaussian blur, sigma 2: edges and
   texture, no shading, so a flash or a lighting change does not count), in a 4x4 grid of
   blocks. Each block is searched within +-``SEARCH`` px in the previous frame by normalised
   cross-correlation (block matching, as motion estimation in video codecs does); ``mismatch`` is
   the mean over blocks of 1 - best correlation. How high that gets by chance depends on the
   texture: smooth pictures correlate with anything nearby, fine texture with nothing. So the
   blocks are also searched in the previous frame turned 180 degrees (the same texture, no
   correspondence), and the score is ``mismatch / chance``: about 1 where the previous frame
   explains the blocks no better than an unrelated picture of the same texture, near 0 where
   they were found again. Above ``threshold`` it is a cut; so it is above ``NEAR`` * threshold
   when the colours changed a lot as well (``COLOURFUL``): smooth pictures, whose blocks find
   loose matches anywhere, score their cuts lower.
3. Recolour: the sample game starts each episode with a new palette on a similar layout (the
   junction moves a little). Where the structure is found again (``STILL``) but the block
   colours changed in a way no single blend toward one colour explains (least squares over the
   16 matched block means, median residual over the colour spread above ``RECOLOUR``), it is a
   cut too; so it is where the layout moved a little (under ``MOVED``) and the colours a lot
   (``COLOURFUL``). On a still layout a new two-colour palette can fit a blend closely, but the
   colour that blend tends toward lies outside the RGB cube, which no flash's does (``OUTSIDE``).
4. Flat pictures (this frame and the one before with fewer than ``MIN_TEXTURED`` textured
   blocks) have no structure to compare; there the colour difference decides, as before
   (``FLAT_CUT``). A flat frame after a textured one (a white-out flash) goes to the structure
   test, where its remaining edges are found again.

Measured with ``benchmarks/scenecut_quality.py`` (the recorders' episode starts as truth, never
shown to the detector), cuts found / false cuts and segments kept for the true scenes:
  VizDoom deathmatch, frameskip 2, 20,000 frames (tuned on this one): 47/50, 13 false; 58
    segments (+3 dropped) for 51 episodes, where the old detector made 626 (+579 dropped);
  the same re-encoded as yuv420p crf 28: 47/50, 9 false; another seed (6,000 frames): 17/18,
    0 false; ``health_gathering`` (6,000 frames): 19/21, 0 false;
  the sample game (400 episodes): 399/399, 0 false when it was written; after the sample game's
    junction began to move every episode, 174/399, and 357/399, 0 false, with the moved-layout
    and blend-colour tests (2026-12-08; the other rows here unchanged by them: VizDoom
    deathmatch re-recorded that day 47/50, 11 false, another seed 17/18, 0 false);
    synthetic pans with flashes: 3/3, 0 false (the old detector: 379 false); Ms. Pac-Man (20,000
    frames, 35 games) and Breakout (8,000, 28): no cut (no restart shows in the frames; the
    recorder's cuts file has them).
  Enduro (8,000 frames, 3 games, not tuned on): 8 false cuts, all at the game's day/night and
    snow/grass palette changes, where the layout stays or moves a little (3 before the
    moved-layout test), and neither restart found (the cuts file has them). A palette change
    on a familiar layout is what the sample game's cuts look like too: these tests cannot tell
    them apart. Still missed: most sample-game variant ``textured`` starts (27/59 found): a new
    texture moves the layout as far as a VizDoom turn does (0.3-0.6).
  ``health_gathering`` re-recorded on 2026-12-08 (6,000 frames, seed 0): 16/16, 21 false (19
    segments dropped as short), against 19/21 and 0 false on the recording of the session that
    tuned it; not examined further.
The missed VizDoom restarts are deaths in the spawn room, restarted there facing a similar way.
At frameskip 4 (8.75 frames/s) turns and strafes change too much between frames: 90/101, 249
false. Cost: 0.2-0.3 ms of CPU per VizDoom frame (the gate skips 3/4 of them), about 1 ms for a
frame that needs both searches; a slowly moving video pays only the gate.
"""
from __future__ import annotations

import cv2
import numpy as np
from einops import rearrange

ANALYSIS = 64      # frames are compared at 64x64 (the extractor's default size: no resize there)
BLOCKS = 4         # 4x4 blocks of 16x16 px
SEARCH = 8         # +-8 px: a VizDoom turn moves the view ~4 px per frame at 17.5 fps, strafes more
BAND_SIGMA = 2.0   # band-pass = gray - GaussianBlur(gray, 2): measured best of sigma 1-4 and Laplacian
GATE = 0.03        # colour change under this is no cut (VizDoom episode starts measured >= 0.059)
TEXTURE = 1.0      # a block whose band-passed gray varies less than this (std, of 255) is flat
MIN_TEXTURED = 8   # fewer textured blocks than this in both frames: flat, decided by colour
FLAT_CUT = 0.05    # colour change that is a cut in a flat picture (the detector's old threshold)
CHANCE_FLOOR = 0.3  # chance mismatch measured 0.23-1.0; the smoothest pictures are scored against 0.3
COLOURFUL = 0.2    # a colour change above this (a fifth of the range: every cut of the synthetic
                   # video, no flash of VizDoom's at this structure score) ...
NEAR = 0.85        # ... makes a structure score above NEAR * threshold enough for a cut
STILL = 0.12       # mean mismatch of the best 3/4 of the textured blocks under this: layout in place
RECOLOUR = 0.36    # blend residual above this in a still layout is a new palette ...
MOVED = 0.32       # ... and in a layout that moved less than this, when the colours changed by
                   # more than COLOURFUL (the sample game moves its junction every episode;
                   # VizDoom's turns move it 0.35-0.55, its flashes change colour by at most 0.24)
TINT = 0.15        # a residual above this in a still layout, with a colour change above TINTED,
TINTED = 0.15      # is a new palette too when the colour its blend fit tends toward lies more
OUTSIDE = 20.0     # than OUTSIDE grey levels outside the RGB cube: no flash or fade does that
BLEND_MARGIN = 16.0  # grey levels of codec noise allowed around the cube
MIN_FADE = 0.1     # ... for a fit that fades (|1 - gain| above this); a pure offset never counts
SCENE_THRESHOLD = 0.87  # default: structure score (mismatch / chance) above this is a cut


def thumbnail(image: np.ndarray) -> np.ndarray:
    """16x16 RGB thumbnail (area average): the colour gate's view of a frame."""
    return cv2.resize(image, (16, 16), interpolation=cv2.INTER_AREA)


def colour_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 thumbnails on a 0-1 scale (cv2.norm: one C call)."""
    return cv2.norm(a, b, cv2.NORM_L1) / (a.size * 255.0)


class _View:
    """What the structure and recolour tests need of one frame."""

    __slots__ = ("small", "band", "padded", "textured", "_turned", "_colour_sums")

    def __init__(self, image: np.ndarray):
        self.small = image if image.shape[:2] == (ANALYSIS, ANALYSIS) else \
            cv2.resize(image, (ANALYSIS, ANALYSIS), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(self.small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        self.band = gray - cv2.GaussianBlur(gray, (0, 0), BAND_SIGMA)
        self.padded = cv2.copyMakeBorder(self.band, SEARCH, SEARCH, SEARCH, SEARCH, cv2.BORDER_REPLICATE)
        # Per-block variance as E[x^2] - E[x]^2 from two area resizes (block means): one C call
        # each, where a numpy reshape + std costs more than the rest of this constructor.
        mean = cv2.resize(self.band, (BLOCKS, BLOCKS), interpolation=cv2.INTER_AREA)
        square = cv2.resize(self.band * self.band, (BLOCKS, BLOCKS), interpolation=cv2.INTER_AREA)
        self.textured = rearrange(square - mean * mean > TEXTURE ** 2, "by bx -> (by bx)")
        self._turned = self._colour_sums = None

    @property
    def turned(self) -> np.ndarray:
        """The padded band-pass image turned 180 degrees: same texture, no correspondence."""
        if self._turned is None:
            self._turned = cv2.flip(self.padded, -1)
        return self._turned

    @property
    def colour_sums(self) -> np.ndarray:
        """Integral image of the RGB frame padded by SEARCH: any block's mean colour in 4 reads."""
        if self._colour_sums is None:
            padded = cv2.copyMakeBorder(self.small, SEARCH, SEARCH, SEARCH, SEARCH, cv2.BORDER_REPLICATE)
            self._colour_sums = cv2.integral(padded, sdepth=cv2.CV_64F)
        return self._colour_sums


def match_blocks(padded: np.ndarray, cur: _View) -> tuple[np.ndarray, np.ndarray]:
    """Per textured block of ``cur``: the best normalised correlation within +-SEARCH px of its
    place in ``padded`` (a previous frame's band-pass image, padded by SEARCH) and where, as
    (dy, dx) in the padded frame. Flat blocks count as found in place (1.0)."""
    size = ANALYSIS // BLOCKS
    best = np.ones(BLOCKS * BLOCKS, np.float32)
    where = np.full((BLOCKS * BLOCKS, 2), SEARCH, np.int64)
    for k in np.flatnonzero(cur.textured):
        y, x = divmod(int(k), BLOCKS)
        y, x = y * size, x * size
        scores = cv2.matchTemplate(padded[y:y + size + 2 * SEARCH, x:x + size + 2 * SEARCH],
                                   cur.band[y:y + size, x:x + size], cv2.TM_CCOEFF_NORMED)
        _, best[k], _, (dx, dy) = cv2.minMaxLoc(scores)
        where[k] = dy, dx
    return best, where


def blend_residual(prev: _View, cur: _View, where: np.ndarray) -> tuple[float, float]:
    """How far the block colours are from one blend of the previous frame's matched blocks:
    fit ``cur = g * prev + o`` (one gain g >= 0, a per-channel offset o) to the 16 block mean
    colours by least squares. Returns (the median block residual over the spread of ``cur``'s
    block colours: a flash about 0, most new palettes of the sample game 0.36 or more; how far,
    in grey levels, the colour the fit blends toward lies outside the RGB cube).

    The second: a flash, a fade or a light change blends every colour toward one colour F by a
    weight w: ``cur = (1 - w) * prev + w * F``, so ``o = (1 - g) * F`` with F in the cube (also
    as the flash ends, g > 1). A new two-colour palette is fitted by *some* gain and offset too
    (a small residual), but the F they imply is usually no colour at all."""
    size = ANALYSIS // BLOCKS
    if cur.textured.any():  # flat blocks were not searched: let them move with the textured ones
        where = np.where(cur.textured[:, None], where, np.median(where[cur.textured], 0).astype(np.int64))
    c = rearrange(cv2.resize(cur.small, (BLOCKS, BLOCKS), interpolation=cv2.INTER_AREA)
                  .astype(np.float64), "by bx c -> (by bx) c")
    grid = np.arange(BLOCKS * BLOCKS)
    top = (grid // BLOCKS) * size + where[:, 0]
    left = (grid % BLOCKS) * size + where[:, 1]
    sums = prev.colour_sums
    p = (sums[top + size, left + size] - sums[top, left + size] - sums[top + size, left]
         + sums[top, left]) / (size * size)
    pc, cc = p - p.mean(0), c - c.mean(0)
    gain = max(float((pc * cc).sum() / max((pc * pc).sum(), 1e-6)), 0.0)
    residual = np.linalg.norm(cc - gain * pc, axis=1)
    spread = np.sqrt((cc * cc).sum(1).mean()) + 4.0  # +4 (of 255): flat pictures
    # o must lie in (1 - g) * [-m, 255 + m] per channel (the cube with a margin m for codec
    # noise; written without dividing by 1 - g, which vanishes for a faint flash)
    # A pure offset (g near 1) implies no colour: it is also what a change from one flash
    # colour to another looks like (red flash, then white), so it counts as inside.
    offset = c.mean(0) - gain * p.mean(0)
    low, high = sorted(((1 - gain) * -BLEND_MARGIN, (1 - gain) * (255 + BLEND_MARGIN)))
    outside = float(np.maximum(np.maximum(low - offset, offset - high), 0.0).max())
    return float(np.median(residual) / spread), outside if abs(1 - gain) > MIN_FADE else 0.0


class SceneCuts:
    """Streaming detector: call ``detect(image)`` for each frame in order; True where the frame
    starts a new scene. ``threshold``: structure score (mismatch / chance, ~1 = unrelated
    pictures) above which a frame is a cut; 0 disables detection."""

    def __init__(self, threshold: float = SCENE_THRESHOLD):
        self.threshold = threshold
        self._image = self._thumb = self._view = None

    def scores(self, image: np.ndarray) -> dict:
        """Against the previous frame: ``colour`` (gate) always; ``flat`` (True when the
        picture has too little structure), ``structure`` (mismatch / chance) and ``recolour``
        (blend residual) where they were needed. ``cut`` is the decision."""
        thumb = thumbnail(image)
        prev_image, prev_thumb, prev_view = self._image, self._thumb, self._view
        self._image, self._thumb, self._view = image, thumb, None
        if prev_thumb is None:
            return {"colour": 0.0, "cut": False}
        out = {"colour": colour_change(prev_thumb, thumb), "cut": False}
        if out["colour"] <= GATE:
            return out
        prev = prev_view or _View(prev_image)
        self._view = cur = _View(image)
        if cur.textured.sum() < MIN_TEXTURED and prev.textured.sum() < MIN_TEXTURED:
            out["flat"] = True
            out["cut"] = out["colour"] > FLAT_CUT
            return out
        best, where = match_blocks(prev.padded, cur)
        mismatch = 1.0 - best
        # Only where the mismatch could reach the threshold is the chance level worth a search.
        near = NEAR * self.threshold if out["colour"] > COLOURFUL else self.threshold
        if mismatch.mean() > near * CHANCE_FLOOR:
            chance = 1.0 - match_blocks(prev.turned, cur)[0]
            out["structure"] = float(mismatch.mean() / max(chance.mean(), CHANCE_FLOOR))
            out["cut"] = out["structure"] > near
        else:
            out["structure"] = float(mismatch.mean() / CHANCE_FLOOR)  # an upper bound
        # Whether the layout stayed: the best-matched 3/4 of the textured blocks (the rest may
        # hold moving sprites); flat blocks say nothing, and too few textured ones say too little.
        textured = np.sort(mismatch[cur.textured])
        if out["cut"] or len(textured) < MIN_TEXTURED:
            return out
        out["layout"] = float(textured[:len(textured) * 3 // 4].mean())
        still = out["layout"] < STILL
        if still or (out["layout"] < MOVED and out["colour"] > COLOURFUL):
            out["recolour"], out["blend_outside"] = blend_residual(prev, cur, where)
            out["cut"] = out["recolour"] > RECOLOUR or (
                still and out["recolour"] > TINT and out["colour"] > TINTED and out["blend_outside"] > OUTSIDE)
        return out

    def detect(self, image: np.ndarray) -> bool:
        if self.threshold <= 0:
            return False
        return self.scores(image)["cut"]
