import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import moving_square

from framegan.data import ClipDataset
from framegan.extract import extract, main
from framegan.frames import to_model
from framegan.store import open_store

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv):
    code = main([str(a) for a in argv] + ["--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def test_round_trip_encode_extract_store_dataset(make_video, tmp_path, capsys):
    frames = moving_square(24)
    video = make_video("game.mp4", frames, fps=10)
    code, out, err = run(capsys, video, "--out", tmp_path / "store", "--size", "48x64")
    assert code == 0, err
    assert "24 frames in -> 24 frames out in 1 segments" in out
    ds = ClipDataset(tmp_path / "store", context=4, horizon=1, split="all")
    assert len(ds) == 20
    for i, (_seg, start) in enumerate(ds.windows):
        error = (ds[i][0] - to_model(frames[start:start + 5])).abs().mean()
        assert error < 0.02  # within codec tolerance (about 2.5 grey levels)
    manifest = open_store(tmp_path / "store").manifest
    assert manifest["preprocess"] == {"size": [48, 64], "crop": "none"} and manifest["fps"] == 10


def test_default_out_resize_crop_and_script_entry(make_video, tmp_path):
    video = make_video("level1.mp4", moving_square(10), fps=10)
    proc = subprocess.run([sys.executable, str(ROOT / "tools/extract_frames.py"), str(video),
                           "--size", "16", "--crop", "center", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    store = open_store(tmp_path / "data/level1")
    assert store.size == (16, 16) and store.preprocess == {"size": [16, 16], "crop": "center"}
    assert store.segments[0].shape == (10, 16, 16, 3)


def test_scene_cut_splits_two_different_clips(make_video, tmp_path):
    a = moving_square(15)
    b = moving_square(15, color=(0, 0, 0), background=(240, 240, 240))
    video = make_video("two.mp4", np.concatenate([a, b]))
    s = extract([video], tmp_path / "store", size=(48, 64), progress=False)
    assert s["segments"] == 2
    assert [seg["frames"] for seg in open_store(tmp_path / "store").manifest["segments"]] == [15, 15]
    assert extract([video], tmp_path / "one", size=(48, 64), scene_threshold=0, progress=False)["segments"] == 1


def test_resampling_to_half_fps_halves_the_frames(make_video, tmp_path):
    video = make_video("clip.mp4", moving_square(20), fps=10)
    s = extract([video], tmp_path / "store", size=(48, 64), fps=5, progress=False)
    assert (s["frames_in"], s["frames_out"], s["fps"]) == (20, 10, 5)
    assert open_store(tmp_path / "store").fps == 5


def test_variable_frame_rate_resamples_on_timestamps(make_timed_video, tmp_path):
    times = np.cumsum([0] + [0.05, 0.15] * 10)[:20]  # irregular, 1.85 s long
    video = make_timed_video("vfr.mp4", moving_square(20), times)
    s = extract([video], tmp_path / "store", size=(48, 64), fps=10, progress=False)
    assert s["frames_out"] == 19 and s["segments"] == 1


def test_decode_gap_splits_and_short_segments_drop(make_timed_video, tmp_path):
    times = [i / 10 for i in range(12)] + [5 + i / 10 for i in range(3)]
    video = make_timed_video("gap.mp4", moving_square(15), times)
    s = extract([video], tmp_path / "store", size=(48, 64), progress=False)
    assert (s["segments"], s["frames_out"], s["dropped_segments"], s["dropped_frames"]) == (1, 12, 1, 3)


def test_drop_static_removes_pause_frames(make_video, tmp_path):
    frames = moving_square(20)
    paused = np.concatenate([frames[:10], np.repeat(frames[10:11], 8, axis=0), frames[11:]])
    video = make_video("pause.mp4", paused)
    s = extract([video], tmp_path / "store", size=(48, 64), drop_static=True, progress=False)
    assert s["static_frames"] == 7 and s["frames_out"] == 20 and s["segments"] == 1


def test_start_end_and_several_videos(make_video, tmp_path):
    v1 = make_video("a.mp4", moving_square(20), fps=10)
    v2 = make_video("b.mp4", moving_square(20, color=(0, 255, 0)), fps=10)
    s = extract([v1, v2], tmp_path / "store", size=24, start=0.5, end=1.5, progress=False)
    assert s["frames_in"] == 20 and s["segments"] == 2
    segs = open_store(tmp_path / "store").manifest["segments"]
    assert [(g["source"], g["start_frame"], g["frames"]) for g in segs] == [("a.mp4", 5, 10), ("b.mp4", 5, 10)]
    assert segs[0]["start_time"] == pytest.approx(0.5)


def test_append_adds_a_video(make_video, tmp_path, capsys):
    v1 = make_video("a.mp4", moving_square(10))
    v2 = make_video("b.mp4", moving_square(10))
    assert run(capsys, v1, "--out", tmp_path / "s", "--size", "32")[0] == 0
    assert run(capsys, v2, "--out", tmp_path / "s", "--size", "32", "--append")[0] == 0
    assert [g["source"] for g in open_store(tmp_path / "s").manifest["segments"]] == ["a.mp4", "b.mp4"]


def bad(capsys, tmp_path, *argv, out="store"):
    code, _, err = run(capsys, *argv, "--out", tmp_path / out)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_bad_inputs_give_one_line_errors_and_no_store(make_video, tmp_path, capsys):
    from test_video import write_audio_only

    good = make_video("good.mp4", moving_square(10, 64, 64))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    audio = tmp_path / "voice.m4a"
    write_audio_only(audio)
    data = good.read_bytes()
    zeroed = tmp_path / "zeroed.mp4"
    zeroed.write_bytes(data[:data.index(b"mdat") + 4] + bytes(len(data) - data.index(b"mdat") - 4))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/thesis.tex").write_text("keep me")
    cases = [
        ((tmp_path / "missing.mp4",), f"{tmp_path / 'missing.mp4'}: no such file"),
        ((tmp_path,), f"{tmp_path}: is a directory"),
        ((text,), f"{text}: not a readable video"),
        ((audio,), f"{audio}: no video stream (audio only)"),
        ((zeroed,), f"{zeroed}: no decodable video frames"),
        ((good, "--size", "0"), "size '0': height and width must be positive"),
        ((good, "--size=-3x4"), "must be positive"),
        ((good, "--size", "big"), "size 'big': expected N or HxW"),
        ((good, "--fps", "fast"), "argument --fps: invalid float value: 'fast'"),
        ((good, "--crop", "0,0,100,100"), f"{good}: crop box 0,0,100,100 (x,y,w,h) does not fit in a 64x64 (HxW) frame"),  # noqa: E501
        ((good, "--crop", "middle"), "crop 'middle': expected none, center or x,y,w,h"),
        ((good, "--fps", "0"), "--fps 0.0: must be positive"),
        ((good, "--start", "3", "--end", "2"), "--end 2.0: must be after --start 3.0"),
        ((good, "--start", "30"), f"{good}: no frames between start 30.0 s and end None s"),
        ((good, good, "--fps", "-1"), "--fps -1.0: must be positive"),
        # not finite, or far beyond any use (inf fps on a file without a duration filled a disk)
        ((good, "--fps", "inf"), "--fps inf: must be a finite number"),
        ((good, "--fps", "1e9"), "--fps 1000000000.0: must be positive and at most 1000"),
        ((good, "--start", "nan"), "--start nan: must be a finite number"),
        ((good, "--end", "nan"), "--end nan: must be a finite number"),
        ((good, "--start", "inf"), "--start inf: must be a finite number"),
        ((good, "--scene-threshold", "nan"), "--scene-threshold nan: must be a finite number"),
        ((good, "--size", "100000"), "size '100000': height and width must be at most 4096"),
    ]
    for argv, message in cases:
        assert message in bad(capsys, tmp_path, *argv)
        assert not (tmp_path / "store").exists()
    assert "cannot write here" in bad(capsys, tmp_path, good, out="afile/store")
    assert "mine: exists and is not a frame store" in bad(capsys, tmp_path, good, out="mine")
    assert (tmp_path / "mine/thesis.tex").read_text() == "keep me"
    assert run(capsys, good, "--out", tmp_path / "s32", "--size", "32")[0] == 0
    assert "store frames are 32x32, this extraction makes 64x64" in \
        bad(capsys, tmp_path, good, "--size", "64", "--append", out="s32")
    assert len(open_store(tmp_path / "s32")) == 10
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temp directories left behind


def test_bad_inputs_that_still_extract_warn(make_video, tmp_path, capsys):
    from test_video import write_png_mov

    noise = np.random.default_rng(0).integers(0, 256, (30, 48, 64, 3), dtype=np.uint8)
    data = make_video("full.mp4", noise).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    code, _, err = run(capsys, cut, "--out", tmp_path / "t", "--size", "48x64", "--scene-threshold", "0")
    assert code == 0 and err.startswith(f"warning: {cut}: damaged or truncated video")
    assert 5 < len(open_store(tmp_path / "t")) < 30

    code, _, err = run(capsys, make_video("tiny.mp4", moving_square(6, 24, 32)), "--out", tmp_path / "u",
                       "--scene-threshold", "0")  # the square is a big part of so small a frame
    assert code == 0 and "source frames are 24x32 (HxW, after crop), smaller than the 64x64 output; upscaling" in err
    assert open_store(tmp_path / "u").segments[0].shape == (6, 64, 64, 3)

    gray = np.stack([np.full((24, 32), 30 * i, np.uint8) for i in range(6)])
    write_png_mov(tmp_path / "gray.mov", gray, "gray")
    assert run(capsys, tmp_path / "gray.mov", "--out", tmp_path / "g", "--size", "12x16",
               "--scene-threshold", "0")[0] == 0
    g = np.asarray(open_store(tmp_path / "g").segments[0])
    assert g.shape == (6, 12, 16, 3) and (g.max(-1) - g.min(-1)).max() <= 1  # R = G = B

    rgba = np.full((6, 24, 32, 4), (200, 100, 50, 0), np.uint8)
    write_png_mov(tmp_path / "rgba.mov", rgba, "rgba")
    assert run(capsys, tmp_path / "rgba.mov", "--out", tmp_path / "r", "--size", "12x16")[0] == 0
    assert np.abs(open_store(tmp_path / "r").segments[0][0].astype(int) - (200, 100, 50)).max() <= 1

    odd = make_video("odd.mp4", moving_square(6, 49, 65))
    assert run(capsys, odd, "--out", tmp_path / "o", "--size", "33x47", "--crop", "1,1,63,47")[0] == 0
    assert open_store(tmp_path / "o").segments[0].shape == (6, 33, 47, 3)


def test_memory_stays_flat_on_a_long_video(make_video, tmp_path):
    """2000 frames stored at 128x128 = 98 MB: holding them would show in RSS; streaming does not."""
    base = moving_square(100, 128, 128, side=32, speed=8)
    video = make_video("long.mp4", np.concatenate([base] * 20), fps=30)
    process, peak, running = psutil.Process(), [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.005)

    # A short run first, so one-off set-up (decoder threads, filter graph, imports) is not counted.
    extract([make_video("short.mp4", base[:20])], tmp_path / "warm", size=128, progress=False)
    start = process.memory_info().rss
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        s = extract([video], tmp_path / "store", size=128, scene_threshold=0, progress=False)
    finally:
        running[0] = False
        sampler.join()
    stored = s["frames_out"] * 128 * 128 * 3
    assert s["frames_out"] == 2000 and stored > 90e6
    assert peak[0] - start < 10e6, f"RSS grew by {(peak[0] - start) / 1e6:.0f} MB"


# ----------------------------------------------------------------------------- actions
BITS = 10


def indexed(n: int, h: int = 48, w: int = 80, scene: int | None = None) -> np.ndarray:
    """uint8 (n, h, w, 3): frame i shows i as a Gray code in 10 black/white bars across the top
    eighth, so any stored frame says which source frame it is, through H.264. Frames k apart
    differ in at most k bars (thumbnail difference <= k x 0.0125: no scene cut for k <= 3, never
    static); from frame ``scene`` on, the background changes colour (a real scene cut)."""
    frames = np.empty((n, h, w, 3), np.uint8)
    bar = w // BITS
    for i in range(n):
        frames[i] = (20, 60, 150) if scene is None or i < scene else (230, 230, 230)
        gray = i ^ (i >> 1)
        for b in range(BITS):
            frames[i, :h // 8, b * bar:(b + 1) * bar] = 255 if gray >> b & 1 else 0
    return frames


def index_of(image: np.ndarray) -> int:
    h, w = image.shape[:2]
    bar = w // BITS
    gray = sum(1 << b for b in range(BITS) if image[h // 16, b * bar + bar // 2].mean() > 128)
    i = 0
    while gray:
        i, gray = i ^ gray, gray >> 1
    return i


def with_actions(make_video, name, frames, actions, fps=10, names=None, cuts=None):
    video = make_video(name, frames, fps=fps)
    np.save(video.with_name(f"{video.stem}.actions.npy"), np.asarray(actions, np.int64))
    if names is not None:
        video.with_name(f"{video.stem}.action_names.json").write_text(json.dumps(names))
    if cuts is not None:
        np.save(video.with_name(f"{video.stem}.cuts.npy"), np.asarray(cuts, np.int64))
    return video


def stored(path):
    """Per segment: (source frame of each stored frame, its stored raw action id)."""
    store = open_store(path)
    return [([index_of(f) for f in seg], acts.tolist()) for seg, acts in zip(store.segments, store.actions)]


def random_actions(n, seed=0, ids=(0, 3, 4, 11)):
    return np.random.default_rng(seed).choice(ids, n)


def test_actions_follow_their_frames_with_names(make_video, tmp_path, capsys):
    acts = random_actions(30)
    video = with_actions(make_video, "game.mp4", indexed(30), acts, names={"0": "NOOP", "3": "RIGHT", "4": "LEFT"})
    code, out, err = run(capsys, video, "--out", tmp_path / "s", "--size", "48x80")
    assert code == 0, err
    assert "30 frames out in 1 segments (48x80 at 10 fps, 4 distinct actions)" in out
    assert stored(tmp_path / "s") == [(list(range(30)), acts.tolist())]
    store = open_store(tmp_path / "s")
    assert store.manifest["actions"] == {"values": [0, 3, 4, 11], "names": ["NOOP", "RIGHT", "LEFT", "11"]}
    assert store.manifest["segments"][0]["actions"] == "segments/000000.actions.npy"
    assert (store.action_values, store.action_names) == ([0, 3, 4, 11], ["NOOP", "RIGHT", "LEFT", "11"])
    ds = ClipDataset(store, context=4, horizon=1, split="all")
    frames, actions = ds[7]
    assert ds.num_actions == 4 and actions.tolist() == np.searchsorted([0, 3, 4, 11], acts[7:12]).tolist()
    assert [index_of(np.asarray(store.segments[0][7 + k])) for k in range(5)] == list(range(7, 12))


def test_actions_follow_start_and_end(make_video, tmp_path):
    acts = random_actions(30)
    video = with_actions(make_video, "game.mp4", indexed(30), acts)
    extract([video], tmp_path / "s", size=(48, 80), start=0.5, end=2.0, progress=False)
    assert stored(tmp_path / "s") == [(list(range(5, 20)), acts[5:20].tolist())]


def test_downsampling_takes_the_action_pressed_last_before_the_next_frame(make_video, tmp_path):
    acts = np.arange(30) * 10  # every frame its own action id: any shift shows
    video = with_actions(make_video, "game.mp4", indexed(30), acts)
    s = extract([video], tmp_path / "s", size=(48, 80), fps=4, progress=False)
    [(sources, actions)] = stored(tmp_path / "s")
    # grid 0, 0.25, 0.5, ... s takes the first frame at or after each (frames are 0.1 s apart)
    assert sources == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28] and s["fps"] == 4
    # frame 0 stands for source frames 0-2: the action after frame 2 leads to the next (3)
    assert actions == [10 * (nxt - 1) for nxt in sources[1:]] + [290]  # last: after the video's last


def test_upsampling_copies_take_their_source_frames_action(make_video, tmp_path):
    acts = np.arange(30) * 10
    video = with_actions(make_video, "game.mp4", indexed(30), acts)
    extract([video], tmp_path / "s", size=(48, 80), fps=25, progress=False)
    [(sources, actions)] = stored(tmp_path / "s")
    assert len(sources) == 73 and sorted(set(sources)) == list(range(30)) and sources == sorted(sources)
    assert actions == [10 * s for s in sources]


def test_cuts_sidecar_starts_segments_and_caps_actions(make_video, tmp_path):
    acts = np.arange(30) * 10
    video = with_actions(make_video, "game.mp4", indexed(30), acts, cuts=[12, 21])
    extract([video], tmp_path / "s", size=(48, 80), progress=False)
    segs = open_store(tmp_path / "s").manifest["segments"]
    assert [(g["start_frame"], g["frames"]) for g in segs] == [(0, 12), (12, 9), (21, 9)]
    assert stored(tmp_path / "s") == [(list(r), [10 * i for i in r]) for r in (range(12), range(12, 21), range(21, 30))]

    np.save(tmp_path / "game.cuts.npy", np.array([13]))  # halved rate: 12 | 14 straddle the cut at 13
    extract([video], tmp_path / "half", size=(48, 80), fps=5, progress=False)
    assert stored(tmp_path / "half") == [
        (list(range(0, 13, 2)), [10, 30, 50, 70, 90, 110, 120]),  # frame 12 ends its episode: after 12
        (list(range(14, 30, 2)), [150, 170, 190, 210, 230, 250, 270, 290])]


def test_cuts_without_actions_still_split(make_video, tmp_path):
    video = make_video("game.mp4", indexed(30))
    np.save(tmp_path / "game.cuts.npy", np.array([10]))
    extract([video], tmp_path / "s", size=(48, 80), progress=False)
    store = open_store(tmp_path / "s")
    assert [len(s) for s in store.segments] == [10, 20] and store.actions is None


def test_scene_cuts_and_dropped_short_segments_keep_actions_aligned(make_video, tmp_path):
    acts = np.arange(30) * 10
    acts[:3], acts[26:] = 99, 77  # only in segments too short to keep
    video = with_actions(make_video, "game.mp4", indexed(30, scene=26), acts, cuts=[3])
    s = extract([video], tmp_path / "s", size=(48, 80), progress=False)
    assert (s["segments"], s["dropped_segments"], s["dropped_frames"]) == (1, 2, 7)
    assert stored(tmp_path / "s") == [(list(range(3, 26)), [10 * i for i in range(3, 26)])]
    assert 99 not in open_store(tmp_path / "s").action_values and 77 not in open_store(tmp_path / "s").action_values

    video = with_actions(make_video, "two.mp4", indexed(30, scene=15), np.arange(30) * 10)
    extract([video], tmp_path / "two", size=(48, 80), progress=False)
    assert stored(tmp_path / "two") == [(list(r), [10 * i for i in r]) for r in (range(15), range(15, 30))]


def test_drop_static_gives_the_kept_frame_the_action_that_ends_the_pause(make_video, tmp_path):
    images = indexed(20)
    paused = np.concatenate([images[:11], np.repeat(images[10:11], 7, axis=0), images[11:]])  # 27 frames
    acts = np.arange(27) * 10
    video = with_actions(make_video, "pause.mp4", paused, acts)
    s = extract([video], tmp_path / "s", size=(48, 80), drop_static=True, progress=False)
    assert s["static_frames"] == 7
    [(shown, actions)] = stored(tmp_path / "s")
    assert shown == list(range(20))
    kept = [*range(11), *range(18, 27)]  # video frames kept
    # video frame 10 is followed by 7 copies; the screen changes after the last (17): its action
    assert actions == [10 * v for v in range(10)] + [170] + [10 * v for v in range(18, 27)]
    assert len(kept) == len(actions)


def test_append_with_and_without_actions(make_video, tmp_path, capsys):
    a = with_actions(make_video, "a.mp4", indexed(12), [0, 3] * 6, names={"3": "RIGHT"})
    b = with_actions(make_video, "b.mp4", indexed(12), [3, 5] * 6, names={"5": "DOWN"})
    plain = make_video("c.mp4", indexed(12))
    assert run(capsys, a, "--out", tmp_path / "s", "--size", "48x80")[0] == 0
    assert run(capsys, b, "--out", tmp_path / "s", "--size", "48x80", "--append")[0] == 0
    store = open_store(tmp_path / "s")
    assert (store.action_values, store.action_names) == ([0, 3, 5], ["0", "RIGHT", "DOWN"])
    assert [g["actions"] for g in store.manifest["segments"]] == ["segments/000000.actions.npy",
                                                                 "segments/000001.actions.npy"]
    assert stored(tmp_path / "s")[1] == (list(range(12)), [3, 5] * 6)
    before = (tmp_path / "s/manifest.json").read_text()
    assert "the store has actions and this extraction has none" in \
        bad(capsys, tmp_path, plain, "--size", "48x80", "--append", out="s")
    assert (tmp_path / "s/manifest.json").read_text() == before
    assert sorted(p.name for p in (tmp_path / "s/segments").iterdir()) == [
        "000000.actions.npy", "000000.npy", "000001.actions.npy", "000001.npy"]

    assert run(capsys, plain, "--out", tmp_path / "p", "--size", "48x80")[0] == 0
    assert "the store has no actions and this extraction has some" in \
        bad(capsys, tmp_path, a, "--size", "48x80", "--append", out="p")
    assert run(capsys, a, "--out", tmp_path / "p", "--size", "48x80", "--append", "--actions", "none")[0] == 0
    assert open_store(tmp_path / "p").actions is None and len(open_store(tmp_path / "p")) == 24


def test_actions_file_option_and_its_names(make_video, tmp_path, capsys):
    video = make_video("game.mp4", indexed(10))
    (tmp_path / "log").mkdir()
    np.save(tmp_path / "log/run1.actions.npy", np.arange(10))
    (tmp_path / "log/run1.action_names.json").write_text('{"1": "FIRE"}')
    code, _, err = run(capsys, video, "--out", tmp_path / "s", "--size", "48x80",
                       "--actions", tmp_path / "log/run1.actions.npy")
    assert code == 0, err
    assert open_store(tmp_path / "s").action_names[:3] == ["0", "FIRE", "2"]
    assert stored(tmp_path / "s") == [(list(range(10)), list(range(10)))]


def test_action_mismatches_are_one_line_errors_and_write_nothing(make_video, make_timed_video, tmp_path, capsys):
    frames = indexed(10)
    short = with_actions(make_video, "short.mp4", frames, np.zeros(9))
    long_mkv = with_actions(make_video, "long.mkv", frames, np.zeros(11))  # mkv: no frame count
    short_mkv = with_actions(make_video, "cut.mkv", frames, np.zeros(9))
    good = with_actions(make_video, "good.mp4", frames, np.zeros(10))
    plain = make_video("plain.mp4", frames)
    floats = make_video("floats.mp4", frames)
    np.save(tmp_path / "floats.actions.npy", np.zeros(10, np.float32))
    broken = make_video("broken.mp4", frames)
    (tmp_path / "broken.actions.npy").write_text("not numpy")
    unnamed = with_actions(make_video, "unnamed.mp4", frames, np.zeros(10))
    (tmp_path / "unnamed.action_names.json").write_text('["NOOP"]')
    unsorted = with_actions(make_video, "unsorted.mp4", frames, np.zeros(10), cuts=[5, 3])
    beyond = with_actions(make_video, "beyond.mp4", frames, np.zeros(10), cuts=[10])
    vfr = make_timed_video("vfr.mp4", frames, [i / 10 + (i >= 5) for i in range(10)])  # a 1 s gap
    np.save(tmp_path / "vfr.actions.npy", np.zeros(10, np.int64))
    cases = [
        ((short,), f"{short}: 10 frames but {tmp_path / 'short.actions.npy'} holds 9 actions"),
        ((short_mkv,), f"{short_mkv}: has a frame 9, but {tmp_path / 'cut.actions.npy'} holds only 9 actions"),
        ((long_mkv,), f"{long_mkv}: 10 frames but {tmp_path / 'long.actions.npy'} holds 11 actions"),
        ((good, plain), f"{good} has actions but {plain} has none"),
        ((plain, "--actions", tmp_path / "nope.npy"), f"{tmp_path / 'nope.npy'}: no such actions file"),
        ((plain, plain, "--actions", tmp_path / "short.actions.npy"), "needs exactly one video, got 2"),
        ((floats,), "actions must be a 1-D integer array, got float32 (10,)"),
        ((broken,), f"{tmp_path / 'broken.actions.npy'}: not a readable .npy file"),
        ((unnamed,), "expected a JSON object of integer ids to names"),
        ((unsorted,), "cuts must be increasing non-negative frame indices"),
        ((beyond,), "cut at frame 10, but"),
        ((vfr,), "so its per-frame actions/cuts cannot be aligned"),
    ]
    for argv, message in cases:
        assert message in bad(capsys, tmp_path, *argv, "--size", "48x80")
        assert not (tmp_path / "store").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_jittered_timestamps_still_align(make_timed_video, tmp_path):
    # 0.05 / 0.15 s steps at a nominal 10.5 fps: every timestamp still rounds to its decode position
    video = make_timed_video("jitter.mp4", indexed(20), np.cumsum([0] + [0.05, 0.15] * 10)[:20])
    np.save(tmp_path / "jitter.actions.npy", np.arange(20) * 10)
    extract([video], tmp_path / "s", size=(48, 80), progress=False)
    assert stored(tmp_path / "s") == [(list(range(20)), [10 * i for i in range(20)])]


# A slowed extraction in a child process (10 ms per stored frame), to signal mid-write.
SLOW_EXTRACT = """
import sys, time
import framegan.extract as e
store = e._store
e._store = lambda *a: (time.sleep(0.01), store(*a))
sys.exit(e.main(sys.argv[1:]))
"""


def _signal_mid_write(argv, parent: Path, pattern: str, signum: int) -> subprocess.CompletedProcess:
    """Start the slowed extraction, wait until a file matching ``pattern`` exists under
    ``parent`` (what it writes), then send ``signum``."""
    child = subprocess.Popen([sys.executable, "-c", SLOW_EXTRACT, *map(str, argv), "--quiet"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(parent.glob(pattern)) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # a few frames into it
    child.send_signal(signum)
    out, err = child.communicate(timeout=60)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def hidden(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.startswith("."))


def test_kill_leaves_nothing_a_rerun_does_not_sweep(make_video, tmp_path):
    import signal

    video = make_video("game.mp4", moving_square(200, 64, 64))
    store = tmp_path / "store"
    # SIGTERM unwinds like Ctrl-C: the half-built store goes, exit 143
    done = _signal_mid_write([video, "--out", store], tmp_path, ".store.*.tmp/segments/*", signal.SIGTERM)
    assert done.returncode == 143 and "interrupted; nothing written" in done.stderr, done.stderr
    assert hidden(tmp_path) == [] and not store.exists()
    # kill -9 cannot clean up; the next writer of the store removes what the dead process left
    done = _signal_mid_write([video, "--out", store], tmp_path, ".store.*.tmp/segments/*", signal.SIGKILL)
    assert done.returncode == -9
    assert [n.split(".")[1] for n in hidden(tmp_path)] == ["store"]  # .store.<pid>.<random>.tmp
    live = tmp_path / f".store.{os.getpid()}.abcd1234.tmp"  # a writer still running: left alone
    live.mkdir()
    assert main([str(video), "--out", str(store), "--quiet"]) == 0
    assert hidden(tmp_path) == [live.name] and len(open_store(store)) == 200
    live.rmdir()
    # an append killed mid-write leaves its segment files under temp names inside the store
    done = _signal_mid_write([video, "--out", store, "--append"], store / "segments", ".*.npy", signal.SIGKILL)
    assert done.returncode == -9 and hidden(store / "segments")
    assert len(open_store(store)) == 200  # the manifest never listed them
    assert main([str(video), "--out", str(store), "--append", "--quiet"]) == 0
    assert hidden(store / "segments") == [] and hidden(tmp_path) == []
    assert len(open_store(store)) == 400
    assert sorted(p.name for p in (store / "segments").iterdir()) == ["000000.npy", "000001.npy"]
