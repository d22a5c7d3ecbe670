"""Scene cuts (framegan.scenecut): real cuts found; camera pans, flashes and moving sprites not."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from framegan import sample_game
from framegan.extract import extract
from framegan.scenecut import SceneCuts
from framegan.store import open_store


def picture(seed: int, h: int = 128, w: int = 512) -> np.ndarray:
    """A textured uint8 (h, w, 3) picture: smooth colour noise plus rectangles (edges)."""
    rng = np.random.default_rng(seed)
    out = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3)).astype(np.float32), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    for _ in range(60):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.rectangle(out, (x, y), (x + int(rng.integers(6, 30)), y + int(rng.integers(6, 30))),
                      [int(c) for c in rng.integers(0, 256, 3)], -1)
    return np.clip(out, 0, 255).astype(np.uint8)


def pan(seed: int, n: int, speed: float, flashes: bool = True) -> np.ndarray:
    """uint8 (n, 64, 64, 3): a 64-px window panning ``speed`` px/frame over ``picture(seed)``,
    back and forth; with ``flashes``, frames 5-6 of every 12 are blended 60 % toward red or
    white and frame 9 is darkened to 40 %, as damage/pick-up flashes and light changes do."""
    big = picture(seed)
    frames = []
    for t in range(n):
        x = int(abs((t * speed) % (2 * 400) - 400))
        f = big[32:96, x:x + 64].astype(np.float32)
        if flashes and t % 12 in (5, 6):
            f = 0.4 * f + 0.6 * np.float32([255, 30, 20] if t % 12 == 5 else [255, 255, 255])
        if flashes and t % 12 == 9:
            f = 0.4 * f
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(frames)


def detections(frames: np.ndarray, threshold: float | None = None) -> list[int]:
    scenes = SceneCuts() if threshold is None else SceneCuts(threshold)
    return [i for i, f in enumerate(frames) if scenes.detect(f)]


@pytest.mark.parametrize("speed", [1, 4, 7])
def test_pans_flashes_and_darkening_are_not_cuts(speed):
    frames = pan(0, 48, speed)
    assert detections(frames) == []
    # ... while the thumbnail colour difference alone (the old detector: > 0.05) cut at every flash
    thumbs = [cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA).astype(int) for f in frames]
    assert sum(np.abs(a - b).mean() / 255 > 0.05 for a, b in zip(thumbs, thumbs[1:])) >= 8


def test_hard_cuts_between_pictures_are_found():
    frames = np.concatenate([pan(1, 30, 3), pan(2, 30, 5), pan(3, 30, 2, flashes=False), pan(4, 30, 6)])
    assert detections(frames) == [30, 60, 90]
    assert detections(frames, threshold=0) == []  # 0 disables


def test_a_new_palette_on_the_same_layout_is_a_cut_a_flash_is_not():
    game = sample_game.get_game("default")
    scene = sample_game.draw_scene(game, np.random.default_rng(0))
    still = [sample_game.render(game, scene, 3, scene.junction)] * 3
    flash = np.clip(0.5 * still[0] + 0.5 * np.float32([255, 0, 0]), 0, 255).astype(np.uint8)
    wall = (scene.layout == scene.wall).all(-1)  # the same walls and corridors in other colours
    layout = np.where(wall[..., None], np.uint8([30, 110, 60]), np.uint8([8, 22, 12]))
    swapped = sample_game.render(game, dataclasses.replace(scene, layout=layout), 3, scene.junction)
    assert detections(np.stack([*still, flash, flash, still[0]])) == []
    assert detections(np.stack([*still, swapped])) == [3]


def test_sample_game_video_every_episode_boundary_and_nothing_else(tmp_path):
    video = tmp_path / "sample.mp4"
    info = sample_game.write_sample_video(video, n_episodes=60, seed=1)
    s = extract([video], tmp_path / "store", size=64, progress=False)
    assert s["segments"] == 60 and s["dropped_segments"] == 0 and s["frames_out"] == info["frames"]
    lengths = [seg["frames"] for seg in open_store(tmp_path / "store").manifest["segments"]]
    assert lengths == [len(e.frames) for e in sample_game.episodes(60, seed=1)]


def test_sample_game_episode_starts_found_by_the_detector_alone(tmp_path):
    # The test above passes with the recorder's cuts file too; here the detector sees only the
    # frames (decoded from the video, as extraction does): most new palettes on a moved or
    # familiar layout are cuts, and nothing inside an episode is.
    from framegan.preprocess import Preprocess
    from framegan.video import write_video

    episodes = list(sample_game.episodes(60, seed=0))
    video = tmp_path / "sample.mp4"
    write_video(video, (f for e in episodes for f in e.frames), 15)
    frames = np.stack([f.image for f in Preprocess(64, "none").iter_video(video)])
    starts = set(np.cumsum([len(e.frames) for e in episodes])[:-1].tolist())
    found = detections(frames)
    assert set(found) <= starts  # no false cut
    assert len(found) >= 50  # of 59 (23 before the moved-layout and blend-colour tests)


def test_extracting_pans_with_flashes_keeps_each_scene_whole(make_video, tmp_path):
    frames = np.concatenate([pan(5, 40, 4), pan(6, 40, 6)])
    video = make_video("pans.mp4", frames, fps=15)
    s = extract([video], tmp_path / "store", size=64, progress=False)
    assert s["segments"] == 2 and s["dropped_segments"] == 0
    assert [seg["frames"] for seg in open_store(tmp_path / "store").manifest["segments"]] == [40, 40]
