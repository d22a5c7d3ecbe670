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
        error = (ds[i] - to_model(frames[start:start + 5])).abs().mean()
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
