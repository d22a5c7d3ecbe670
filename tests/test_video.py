import gc
import threading
import warnings

import av
import cv2
import numpy as np
import pytest
from av.video.reformatter import VideoReformatter
from conftest import moving_square
from PIL import Image

from framegan import video
from framegan.preprocess import Preprocess
from framegan.video import VideoError, iter_frames, probe, write_video


def mean_abs(a, b):
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_mp4_round_trip_frames_times_and_info(make_video):
    frames = moving_square(20)
    path = make_video("clip.mp4", frames, fps=10)
    info = probe(path)
    assert (info.width, info.height, info.fps, info.frames) == (64, 48, 10.0, 20)
    assert info.duration == pytest.approx(2.0, abs=0.11)
    out = list(iter_frames(path))
    assert len(out) == 20
    assert [f.index for f in out] == list(range(20))
    assert [f.time for f in out] == pytest.approx([i / 10 for i in range(20)], abs=1e-6)
    for f, ref in zip(out, frames):
        assert f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8
        assert mean_abs(f.image, ref) < 2.0  # yuv444p keeps the saturated square's colour


def test_size_hint_and_crop_match_opencv_area(make_video):
    frames = moving_square(6)
    path = make_video("clip.mp4", frames)
    out = list(iter_frames(path, size_hint=(16, 12), crop=(8, 0, 48, 48)))
    assert [f.image.shape for f in out] == [(16, 12, 3)] * 6
    # FFmpeg's area scaler and OpenCV's INTER_AREA (Preprocess.__call__) agree to within rounding
    prep = Preprocess((16, 12), "8,0,48,48")
    for f, ref in zip(out, frames):
        assert mean_abs(f.image, prep(ref)) < 3.0


def test_start_end_and_fps_resampling(make_video):
    path = make_video("clip.mp4", moving_square(20), fps=10)
    part = list(iter_frames(path, start=0.5, end=1.5))
    assert [f.index for f in part] == list(range(5, 15))
    half = list(iter_frames(path, fps=5))
    assert len(half) == 10
    assert [f.index for f in half] == list(range(0, 20, 2))
    assert [f.time for f in half] == pytest.approx([i / 5 for i in range(10)], abs=1e-6)


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "framegan-decode"]


def test_decode_thread_stops_at_end_close_and_error(make_video, monkeypatch):
    # Frames are decoded in a second thread, PREFETCH ahead: however reading ends (the video's
    # end, an ``end`` time, a reader closed halfway, a decoder error), that thread is gone after,
    # so the container it reads is never closed under it. A reader dropped halfway without
    # close() goes with the garbage collector, thread included.
    monkeypatch.setattr(video, "PREFETCH", 2)  # the decoder blocks on a full queue
    path = make_video("clip.mp4", moving_square(20), fps=10)
    gc.collect()  # readers other tests dropped
    assert not decode_threads()
    dropped = iter_frames(path)
    next(dropped)
    del dropped
    gc.collect()
    assert not decode_threads()
    assert [f.index for f in iter_frames(path)] == list(range(20)) and not decode_threads()
    assert len(list(iter_frames(path, end=0.5))) == 5 and not decode_threads()
    reader = iter_frames(path)
    first = [next(reader).index for _ in range(3)]
    assert first == [0, 1, 2] and len(decode_threads()) == 1
    reader.close()
    assert not decode_threads()

    original = video._decode

    def broken(container, stream, errors):  # the real decoder, failing at the fifth frame
        for k, vf in enumerate(original(container, stream, errors)):
            if k == 4:
                raise RuntimeError("decoder died")
            yield vf
    monkeypatch.setattr(video, "_decode", broken)
    broken_reader = iter_frames(path)
    got = []
    with pytest.raises(RuntimeError, match="decoder died"):
        for f in broken_reader:
            got.append(f.index)
    assert got == [0, 1, 2, 3] and not decode_threads()


def test_reader_collected_on_its_own_decode_thread(make_video, monkeypatch):
    # A dropped reader is in a reference cycle, so the garbage collector may finalize it on any
    # thread, its own decode thread included (seen: "RuntimeError: cannot join current thread").
    # Simulated here: the decode thread itself closes the reader's generator mid-file, as the
    # collector would; that must stop the thread quietly, without joining itself.
    monkeypatch.setattr(video, "PREFETCH", 2)
    path = make_video("clip.mp4", moving_square(20), fps=10)
    original, go, done, failures = video._decode, threading.Event(), threading.Event(), []
    holder = {}

    def collected_here(container, stream, errors):
        for k, vf in enumerate(original(container, stream, errors)):
            if k == 3:
                go.wait(5)
                try:
                    holder["reader"]._frames.close()  # what gc does to an abandoned reader
                except Exception as e:  # noqa: BLE001 - recorded for the assertion below
                    failures.append(e)
                done.set()
            yield vf
    monkeypatch.setattr(video, "_decode", collected_here)
    holder["reader"] = reader = iter_frames(path)
    assert next(reader).index == 0
    go.set()
    assert done.wait(5)
    assert failures == []
    for t in decode_threads():
        t.join(5)
    assert not decode_threads()
    with pytest.raises(StopIteration):
        next(reader)  # finished, not hung
    reader.close()  # and closing it afterwards on this thread is fine


def test_conversion_failure_is_a_one_line_video_error(make_video, monkeypatch):
    path = make_video("clip.mp4", moving_square(4))

    def refuse(self, frame):  # what swscale answers for a size or format it cannot scale
        raise av.error.ArgumentError(22, "Invalid argument")
    monkeypatch.setattr(video._Converter, "__call__", refuse)
    with pytest.raises(VideoError, match=r"clip.mp4: cannot convert a 64x48 yuv444p frame"):
        list(iter_frames(path, size_hint=(16, 16)))
    assert not decode_threads()


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le"])
def test_odd_crop_offset_keeps_colour_at_any_bit_depth(tmp_path, pix_fmt):
    # FFmpeg's exact crop of a high-bit-depth 4:2:0 frame at an odd x scrambled its colours
    # (white came back [50, 255, 0]); a centre crop of 854x480 starts at x = 187.
    frames = moving_square(6, 64, 66)
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt, s.options = 66, 64, pix_fmt, {"crf": "10"}
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format=pix_fmt)
            vf.pts = i
            c.mux(s.encode(vf))
        c.mux(s.encode(None))
    prep = Preprocess((16, 16), "center")  # the 64x64 square at x = 1
    out = list(prep.iter_video(path))
    assert len(out) == 6
    for f, ref in zip(out, frames):
        assert mean_abs(f.image, prep(ref)) < 4.0, pix_fmt


def test_start_in_mpeg_ts_is_exact(tmp_path):
    # The TS demuxer seeks to the keyframe *after* the target: --start 2.5 began at 3.0 s
    # (frames silently lost), and a file with one keyframe had "no decodable video frames".
    frames = moving_square(60, 64, 64)
    for keyint in (15, 1000):
        path = tmp_path / f"k{keyint}.ts"
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=15)
            s.width, s.height, s.pix_fmt = 64, 64, "yuv444p"
            s.options = {"crf": "18", "g": str(keyint), "keyint_min": str(keyint)}
            for i, f in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(f, format="rgb24")
                vf.pts = i
                c.mux(s.encode(vf))
            c.mux(s.encode(None))
        got = list(iter_frames(path, start=2.5, end=3.5))
        assert [f.index for f in got] == list(range(38, 53)), keyint
        for f in got:
            assert mean_abs(f.image, frames[f.index]) < 3.0


def test_variable_frame_rate_resamples_on_timestamps(make_timed_video):
    frames = moving_square(20)
    times = np.cumsum([0] + [0.05, 0.15] * 10)[:20]  # 0, .05, .2, .25, .4, ... 1.85
    path = make_timed_video("vfr.mp4", frames, times)
    assert [f.time for f in iter_frames(path)] == pytest.approx(times, abs=1e-3)
    out = list(iter_frames(path, fps=10))
    assert [f.time for f in out] == pytest.approx([i / 10 for i in range(19)], abs=1e-6)
    # each grid time takes the first decoded frame at or after it
    firsts = [int(np.searchsorted(times, t - 1e-6)) for t in np.arange(19) / 10]
    for f, k in zip(out, firsts):
        assert mean_abs(f.image, frames[k]) < 2.0
    assert not any(f.gap for f in out)


def test_timestamp_jump_is_a_gap(make_timed_video):
    times = [i / 10 for i in range(10)] + [2 + i / 10 for i in range(10)]
    path = make_timed_video("gap.mp4", moving_square(20), times)
    assert [i for i, f in enumerate(iter_frames(path)) if f.gap] == [10]


def test_gif_written_with_pillow_loops_and_reads_back(tmp_path):
    frames = moving_square(8)
    path = tmp_path / "anim.gif"
    assert write_video(path, frames, fps=10) == 8
    with Image.open(path) as im:
        assert im.n_frames == 8 and im.info["loop"] == 0 and im.info["duration"] == 100
    assert len(list(iter_frames(path))) == 8


def test_write_is_atomic_and_checks_frames(tmp_path):
    def failing():
        yield from moving_square(3)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        write_video(tmp_path / "out.mp4", failing(), fps=10)
    with pytest.raises(VideoError, match="uint8"):
        write_video(tmp_path / "out.mp4", moving_square(3).astype(np.float32), fps=10)
    with pytest.raises(VideoError, match="no frames"):
        write_video(tmp_path / "out.gif", [], fps=10)
    with pytest.raises(VideoError, match="even"):
        write_video(tmp_path / "out.mp4", moving_square(3, 47, 63), fps=10, pix_fmt="yuv420p")
    assert list(tmp_path.iterdir()) == []  # no file, no temp left behind


def test_odd_sizes_round_trip_in_yuv444p(make_video):
    frames = moving_square(5, 47, 63)
    out = list(iter_frames(make_video("odd.mp4", frames)))
    assert out[0].image.shape == (47, 63, 3) and len(out) == 5


def test_large_420_frames_halve_luma_first_and_keep_colour_tags():
    """The fast path (luma 2x area-averaged into yuv444p, then swscale) gives what swscale's own
    scaling of a whole synthetic frame gives, colour space and range included, and runs only where
    it should: 8-bit 4:2:0, even sizes, output at most half the frame. (On *decoded* H.264 the two
    differ, and the fast path is the one closer to full-size RGB + area: the next test.)"""
    blocks = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    image = cv2.resize(blocks, (256, 192), interpolation=cv2.INTER_NEAREST)
    rgb = av.VideoFrame.from_ndarray(image, format="rgb24")
    cases = [("yuv420p", {}), ("yuvj420p", {}),
             ("yuv420p", {"dst_colorspace": "ITU709", "dst_color_range": "JPEG"})]
    for fmt, tags in cases:
        frame = rgb.reformat(format=fmt, **tags)
        direct = VideoReformatter().reformat(frame, width=64, height=48, format="gbrp",
                                             interpolation="AREA").to_ndarray()
        convert = video._Converter((48, 64), None)
        out = convert(frame)
        assert convert.half is not None and convert.half.format.name == fmt.replace("420", "444")
        assert out.shape == (48, 64, 3)
        assert mean_abs(out, direct) < 0.5 and np.abs(out.astype(int) - direct).max() <= 3, (fmt, tags)
        ref = cv2.resize(frame.to_ndarray(format="rgb24"), (64, 48), interpolation=cv2.INTER_AREA)
        assert mean_abs(out, ref) < 1.5, (fmt, tags)
    frame = rgb.reformat(format="yuv420p")
    for size in [(128, 160), (97, 128)]:  # more than half the frame: scaled whole, as before
        convert = video._Converter(size, None)
        assert convert(frame).shape == (*size, 3) and convert.half is None
    for fmt in ["yuv444p", "yuv422p"]:
        convert = video._Converter((48, 64), None)
        assert convert(rgb.reformat(format=fmt)).shape == (48, 64, 3) and convert.half is None
    odd = av.VideoFrame.from_ndarray(image[:191, :255].copy(), format="rgb24").reformat(format="yuv420p")
    convert = video._Converter((48, 64), None)
    assert convert(odd).shape == (48, 64, 3) and convert.half is None


def test_decoded_h264_halved_path_matches_full_size_rgb_area(make_video):
    """A real decoded 4:2:0 frame: the halved path stays within a few levels of converting the
    whole frame to RGB and area-resizing it (what extraction approximates without that cost)."""
    blocks = np.random.default_rng(1).integers(0, 256, (5, 12, 16, 3), dtype=np.uint8)
    frames = np.stack([cv2.resize(b, (256, 192), interpolation=cv2.INTER_NEAREST) for b in blocks])
    path = make_video("blocks.mp4", frames, pix_fmt="yuv420p")
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    assert decoded[0].format.name == "yuv420p"
    convert = video._Converter((48, 64), None)
    for f in decoded:
        out = convert(f)
        ref = cv2.resize(f.to_ndarray(format="rgb24"), (64, 48), interpolation=cv2.INTER_AREA)
        assert mean_abs(out, ref) < 2.0 and np.abs(out.astype(int) - ref).max() <= 12
    assert convert.half is not None


def write_audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_unreadable_inputs_raise_one_line_errors(tmp_path, make_video):
    text = tmp_path / "notes.mp4"
    text.write_text("this is a text file, not a video\n" * 20)
    audio = tmp_path / "voice.m4a"
    write_audio_only(audio)
    good = make_video("good.mp4", moving_square(10)).read_bytes()
    zeroed = tmp_path / "zeroed.mp4"  # index intact, every packet garbage: nothing decodes
    mdat = good.index(b"mdat")
    zeroed.write_bytes(good[:mdat + 4] + bytes(len(good) - mdat - 4))
    cases = [(tmp_path / "missing.mp4", "no such file"), (tmp_path, "is a directory"),
             (text, "not a readable video"), (audio, "no video stream \\(audio only\\)")]
    for path, why in cases:
        with pytest.raises(VideoError, match=f"{path}: {why}") as e:
            probe(path)
        assert "\n" not in str(e.value)
    with pytest.raises(VideoError, match=f"{zeroed}: no decodable video frames"):
        list(iter_frames(zeroed))


def test_truncated_file_keeps_decodable_frames_and_warns_once(make_video, tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (30, 48, 64, 3), dtype=np.uint8)
    data = make_video("full.mp4", noise).read_bytes()  # noise: every frame has real weight
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = list(iter_frames(cut))
    assert 5 < len(out) < 30
    assert len(caught) == 1 and "truncated" in str(caught[0].message) and str(cut) in str(caught[0].message)


def write_png_mov(path, frames, pix_fmt):
    """PNG-in-MOV keeps gray and RGBA pixel formats as they are (H.264 would convert them)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format=pix_fmt)))
        container.mux(stream.encode(None))


def test_grayscale_and_rgba_sources_become_rgb(tmp_path):
    gray = np.stack([np.full((24, 32), 40 * i, np.uint8) for i in range(4)])
    write_png_mov(tmp_path / "gray.mov", gray, "gray")
    out = list(iter_frames(tmp_path / "gray.mov"))
    assert [f.image.shape for f in out] == [(24, 32, 3)] * 4
    for f, ref in zip(out, gray):
        assert np.abs(f.image.astype(int) - ref[..., None]).max() <= 1
    rgba = np.zeros((3, 24, 32, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 128
    write_png_mov(tmp_path / "rgba.mov", rgba, "rgba")
    out = list(iter_frames(tmp_path / "rgba.mov"))
    assert [f.image.shape for f in out] == [(24, 32, 3)] * 3
    assert np.array_equal(out[0].image, rgba[0, ..., :3])  # alpha dropped, colour kept


def test_preprocess_arrays_settings_and_crop_specs():
    from framegan.preprocess import CropSpec, PreprocessError, parse_size

    prep = Preprocess((4, 6), "center")
    assert Preprocess.from_dict(prep.to_dict()) == prep and prep.to_dict() == {"size": [4, 6], "crop": "center"}
    gray = np.tile(np.arange(16, dtype=np.uint8) * 10, (12, 1))  # (12, 16) ramp
    out = prep(gray)
    assert out.shape == (4, 6, 3) and np.array_equal(out[..., 0], out[..., 2])
    assert out[0, 0, 0] == round(np.mean(np.arange(2, 4) * 10))  # area mean of the centre square
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = (10, 20, 30), 255
    assert np.array_equal(Preprocess((2, 2))(rgba), np.full((2, 2, 3), (10, 20, 30), np.uint8))
    assert CropSpec.parse("center").region(640, 480) == (80, 0, 480, 480)
    assert CropSpec.parse("1,2,3,4").region(10, 10) == (1, 2, 3, 4) and str(CropSpec.parse("1,2,3,4")) == "1,2,3,4"
    assert parse_size("64") == (64, 64) and parse_size("48x64") == (48, 64)
    for bad_crop in ("1,2,3", "a,b,c,d", "0,0,0,5", "left"):
        with pytest.raises(PreprocessError):
            CropSpec.parse(bad_crop)
    with pytest.raises(PreprocessError, match="does not fit"):
        CropSpec.parse("5,5,10,10").region(12, 12)
    with pytest.warns(UserWarning, match="upscaling"):
        assert Preprocess((32, 32))(gray).shape == (32, 32, 3)
