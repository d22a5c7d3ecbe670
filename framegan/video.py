"""Video files in and out: decode anything PyAV (FFmpeg) opens to RGB frames, write mp4 / gif.

Here a frame is a uint8 ``(H, W, 3)`` RGB numpy array; the model's ``(B, T, C, H, W)`` float
tensors in [-1, 1] are made from them by ``framegan.frames.to_model`` and nowhere else.

Speed: converting a full-size decoded frame to RGB costs about as much as decoding it. So crop
and area resize run on the YUV planes inside FFmpeg (libswscale) and only the small result is
converted to RGB (see ``_Converter``); frames skipped by ``start``/``end``/``fps`` are never
converted at all. Decoding runs in its own thread, a few frames ahead of the consumer
(``_prefetch``). ``benchmarks/extract_speed.py`` measures the result against
decode-only.

Writing uses H.264 in **yuv444p** by default: yuv420p halves the colour resolution, and small
saturated sprites (Atari colours) came back at ~24 dB PSNR even at crf 10, against 38 dB at crf 23
and 48 dB at crf 10 with yuv444p (measured for issue 2). Some players (browsers, QuickTime)
cannot play yuv444p; pass ``pix_fmt="yuv420p"`` (even sizes only) for those.
"""
from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from framegan.atomic import atomic_path

# One swscale thread per conversion (PyAV's default is one per CPU): the output is tiny, and the
# decoder's own threads already keep the other cores busy.
SWS_THREADS = 1
PREFETCH = 8    # decoded frames the decode thread may run ahead of the consumer
# 4:2:0 formats whose luma ``_Converter`` halves first, and the 4:4:4 format that result takes
HALVABLE = {"yuv420p": "yuv444p", "yuvj420p": "yuvj444p"}
GAP_FRAMES = 3  # a timestamp jump longer than this many frame intervals counts as a decode gap


class VideoError(ValueError):
    """A video that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float                # nominal frame rate (average rate of the stream)
    frames: int | None        # frame count when the container records it
    duration: float | None    # seconds, when known


@dataclass(frozen=True, slots=True)
class Frame:
    image: np.ndarray  # uint8 (H, W, 3) RGB; shared between duplicates made by fps resampling
    time: float        # seconds from the start of the video (the resampling grid time with ``fps``)
    index: int         # source frame number: time of the decoded frame times the nominal fps
    gap: bool = False  # True when a decode gap (timestamp jump) precedes this frame


def _fail(path: Path, e: Exception) -> VideoError:
    why = getattr(e, "strerror", None) or str(e).strip().splitlines()[0] or type(e).__name__
    return VideoError(f"{path}: not a readable video ({why[0].lower() + why[1:]})")


def _open(path: str | Path):
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, expected a video file")
    try:
        container = av.open(str(path))
    except PermissionError:
        raise VideoError(f"{path}: permission denied") from None
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise _fail(path, e) from None
    if not container.streams.video:
        audio = " (audio only)" if container.streams.audio else ""
        container.close()
        raise VideoError(f"{path}: no video stream{audio}")
    return container, container.streams.video[0]


def _info(container, stream) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 30.0  # no rate recorded anywhere (rare): assume 30
    if stream.duration is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = None
    return VideoInfo(stream.codec_context.width, stream.codec_context.height, fps,
                     stream.frames or None, duration)


def probe(path: str | Path) -> VideoInfo:
    """Size, frame rate, frame count and duration of the first video stream, without decoding."""
    container, stream = _open(path)
    try:
        return _info(container, stream)
    finally:
        container.close()


class _Converter:
    """Crop + area resize + RGB conversion inside FFmpeg (libswscale); no full-size RGB frame.

    YUV frames are scaled straight to planar RGB (gbrp) at the output size: cheaper than a
    full-size RGB frame, and accurate, where swscale's scaled YUV -> *packed* RGB path
    mishandles subsampled chroma (errors of 100+ levels on sprite edges against full-size RGB +
    area, measured; gbrp's worst is under 20 and its mean about 2.6, as good as scaling to yuv444p
    and converting after). Without a crop a cached ``VideoReformatter`` does the work; a crop needs
    a libavfilter graph (scale to yuv444p, then RGB), which costs ~100 us more per frame.

    4:2:0 frames at least twice the output size first have their luma plane halved by OpenCV's
    exact 2x area path (SIMD) into a yuv444p frame that takes the chroma planes as they are (they
    are already half size); swscale then scales that. swscale's area scaling costs per *input*
    pixel, so this halves the one full-size pass extraction adds: 0.85 -> 0.45 ms per 1080p frame
    (one core, 40 frames of ``benchmarks/extract_speed.py``'s video), and it is more accurate
    too: mean / worst error against full-size RGB + cv2 INTER_AREA 1.43 / 7 -> 1.24 / 6 levels at
    1080p, 2.59 / 19 -> 1.18 / 10 at 640x480, 2.99 / 41 -> 1.17 / 3 on 256x192 colour blocks
    (swscale's own 4:2:0 chroma path on decoded frames is the weaker one; tests/test_video.py).
    Halving the chroma planes as well was as fast but worse (worst 19 and 39), and a second
    halving worse still (worst 56).
    """

    def __init__(self, size: tuple[int, int] | None, crop: tuple[int, int, int, int] | None):
        self.size, self.crop = size, crop
        self.scaler, self.to_rgb = VideoReformatter(), VideoReformatter()
        self.graph, self.key = None, None
        self.half = None  # the reused yuv444p frame of ``_halve_luma``

    def _halve_luma(self, frame: av.VideoFrame) -> av.VideoFrame | None:
        """The 4:2:0 ``frame`` as yuv444p at half size (luma 2x area-averaged), or None when
        it is not even-sized 8-bit 4:2:0 at least twice the output size."""
        fmt = HALVABLE.get(frame.format.name)
        w, h = frame.width, frame.height
        if fmt is None or w % 2 or h % 2 or w // 2 < self.size[1] or h // 2 < self.size[0]:
            return None
        half = self.half
        if half is None or (half.width, half.height, half.format.name) != (w // 2, h // 2, fmt):
            half = self.half = av.VideoFrame(w // 2, h // 2, fmt)
        (y, u, v), (half_y, half_u, half_v) = map(_plane, frame.planes), map(_plane, half.planes)
        cv2.resize(y, (w // 2, h // 2), dst=half_y, interpolation=cv2.INTER_AREA)
        half_u[:], half_v[:] = u, v
        half.colorspace, half.color_range = frame.colorspace, frame.color_range
        return half

    def _build_graph(self, frame: av.VideoFrame, small_format: str) -> None:
        graph = av.filter.Graph()
        node = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                time_base=frame.time_base or Fraction(1, 1000))
        x, y, w, h = self.crop
        chain = []
        name = frame.format.name
        if name.startswith("yuv") and "444" not in name and frame.format.components[0].bits > 8:
            # FFmpeg's exact crop of high-bit-depth subsampled frames at an odd x scrambles their
            # colours (white came back [50, 255, 0], tests/test_video.py): unsubsample first
            chain.append(("format", "yuv444p16le"))
        chain.append(("crop", f"{w}:{h}:{x}:{y}:exact=1"))  # exact: no rounding to the chroma grid
        if self.size is not None:
            chain.append(("scale", f"{self.size[1]}:{self.size[0]}:flags=area"))
        chain.append(("format", small_format))
        for name, args in chain:
            nxt = graph.add(name, args)
            node.link_to(nxt)
            node = nxt
        node.link_to(graph.add("buffersink"))
        graph.configure()
        self.graph, self.key = graph, (frame.width, frame.height, frame.format.name)

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        yuv = frame.format.name.startswith(("yuv", "nv"))
        if self.crop is not None:
            if (frame.width, frame.height, frame.format.name) != self.key:
                self._build_graph(frame, "yuv444p" if yuv else "rgb24")
            self.graph.push(frame)
            frame = self.graph.pull()
        elif self.size is not None:
            frame = self._halve_luma(frame) or frame  # None unless 4:2:0 (HALVABLE)
            # Planar RGB (gbrp) takes swscale's accurate path in one call, as good as yuv444p
            # then RGB (mean error 2.56 vs 2.57 levels against full-size RGB + area, worst 19
            # both) and 0.19 vs 0.21 ms per 640x480 frame; packed RGB straight from scaled YUV
            # is the inaccurate path (mean 19, worst 170). On decoded 4:2:0 colour blocks gbrp
            # from the whole frame was worst 41 (see the class docstring): halved frames come here
            # as yuv444p.
            frame = self.scaler.reformat(frame, width=self.size[1], height=self.size[0],
                                         format="gbrp" if yuv else "rgb24", interpolation="AREA",
                                         threads=SWS_THREADS)
            if yuv:
                return frame.to_ndarray()  # (H, W, 3) in R, G, B order
        # rgb24 drops alpha and replicates gray to 3 channels
        return self.to_rgb.reformat(frame, format="rgb24", threads=SWS_THREADS).to_ndarray()


def _plane(p) -> np.ndarray:
    """A writable ``(height, width)`` uint8 view of one frame plane (rows padded to line_size)."""
    return np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width]


def _decode(container, stream, errors: list[str]) -> Iterator[av.VideoFrame]:
    """Decode packet by packet so one damaged packet (or a truncated tail) loses only itself."""
    try:
        for packet in container.demux(stream):  # ends with a flush packet
            try:
                yield from packet.decode()
            except av.FFmpegError as e:
                errors.append(getattr(e, "strerror", None) or str(e))
        return
    except av.FFmpegError as e:  # the container itself ends early or is damaged
        errors.append(getattr(e, "strerror", None) or str(e))
    try:  # drain the frames the decoder threads still hold
        yield from stream.codec_context.decode(None)
    except av.FFmpegError:
        pass


# The container the current thread decodes, set on each decode thread. A dropped reader sits in a
# reference cycle (its generator holds it), so the garbage collector may finalize it on any thread,
# its own decode thread included: that thread cannot join itself, nor close the container it is
# in the middle of reading (it stops at its next frame, and the container goes with it).
_decoding = threading.local()


def _on_own_decoder(container) -> bool:
    return getattr(_decoding, "container", None) is container


def _prefetch(container, stream, errors: list[str]) -> Iterator[av.VideoFrame]:
    """``_decode`` in a second thread, up to ``PREFETCH`` frames ahead of the consumer.

    Why: decoding in the consuming thread, the decoder waits while each frame is converted,
    scene-cut tested and stored, and its own frame threads idle. FFmpeg's decode and swscale calls
    release the GIL, so a decode thread keeps the decoder fed meanwhile (extraction / decode-only
    0.79 -> 0.84 at 640x480, 0.76 -> 0.85 at 1080p on 2 cores, means of 3-5 interleaved runs of
    ``benchmarks/extract_speed.py``).
    Memory stays flat: at most ``PREFETCH`` decoded frames wait. Closing this generator (or its
    garbage collection) stops and joins the thread, which must happen before the container
    closes; the thread holds only the container, never the reader, so an abandoned reader is
    still collected.
    """
    items: queue.Queue = queue.Queue(PREFETCH)
    stop, end = threading.Event(), object()

    def put(item) -> bool:  # False once the consumer has gone
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        _decoding.container = container
        frames = _decode(container, stream, errors)
        try:
            for vf in frames:
                if not put(vf):
                    return
            put(end)
        except BaseException as e:  # re-raised in the consumer
            put(e)
        finally:
            frames.close()

    thread = threading.Thread(target=produce, name="framegan-decode", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        if not _on_own_decoder(container):
            thread.join()


def _seek_before(container, stream, target: int) -> bool:
    """Seek to the keyframe at or before pts ``target``, as ``backward=True`` asks; False where
    the demuxer lands after it (or past the last frame) and the caller must decode from the start.
    Checked by decoding the first frame there, then seeking again (the same landing)."""
    container.seek(target, stream=stream, backward=True)
    try:
        first = next(iter(_decode(container, stream, [])), None)
    except av.FFmpegError:
        first = None
    if first is None or (first.pts is not None and first.pts > target):
        return False
    container.seek(target, stream=stream, backward=True)
    return True


class VideoReader:
    """Iterator of ``Frame`` from one file (see ``iter_frames``); counts what it decoded."""

    def __init__(self, path, *, start=None, end=None, size_hint=None, crop=None, fps=None):
        self.path = Path(path)
        self.container, self.stream = _open(self.path)
        self.info = _info(self.container, self.stream)
        self.decoded = 0  # source frames decoded inside [start, end)
        self._frames = self._generate(start, end, size_hint, crop, fps)

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        return next(self._frames)

    def close(self) -> None:
        self._frames.close()
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _generate(self, start, end, size_hint, crop, fps) -> Iterator[Frame]:
        stream, src_fps = self.stream, self.info.fps
        stream.thread_type = "AUTO"  # frame/slice threads inside the decoder
        tb = float(stream.time_base or Fraction(1, 1000))  # float: Fraction math is slow per frame
        t_zero = stream.start_time * tb if stream.start_time is not None else 0.0
        if start and not _seek_before(self.container, stream, int((start + t_zero) / tb)):
            # The demuxer landed after ``start`` (MPEG-TS seeks to the keyframe *after* it):
            # decode from the beginning instead, skipping up to ``start`` below.
            self.container.close()
            self.container, self.stream = _open(self.path)
            stream = self.stream
            stream.thread_type = "AUTO"
        converter, eps = _Converter(size_hint, crop), 1e-6

        def convert(vf: av.VideoFrame) -> np.ndarray:
            try:
                return converter(vf)
            except av.FFmpegError as e:  # e.g. a pixel format swscale cannot scale
                raise VideoError(f"{self.path}: cannot convert a {vf.width}x{vf.height} "
                                 f"{vf.format.name} frame ({e})") from None
        errors: list[str] = []
        seen = 0
        prev_t = grid_t0 = None
        grid_k = 0
        decoded = _prefetch(self.container, stream, errors)
        try:
            for vf in decoded:
                seen += 1
                t = (vf.pts * tb - t_zero) if vf.pts is not None else \
                    (prev_t + 1 / src_fps if prev_t is not None else 0.0)
                if start is not None and t < start - eps:
                    continue
                if end is not None and t >= end - eps:
                    break
                self.decoded += 1
                gap = prev_t is not None and t - prev_t > GAP_FRAMES / src_fps
                prev_t = t
                index = round(t * src_fps)
                if fps is None:
                    yield Frame(convert(vf), t, index, gap)
                    continue
                # Resample on timestamps (variable frame rate safe): grid time t_k = t0 + k / fps
                # takes the first decoded frame at or after it. A gap restarts the grid.
                if grid_t0 is None or gap:
                    grid_t0, grid_k = t, 0
                image = None
                while grid_t0 + grid_k / fps <= t + eps:
                    image = convert(vf) if image is None else image
                    yield Frame(image, grid_t0 + grid_k / fps, index, gap)
                    gap = False
                    grid_k += 1
        finally:
            decoded.close()  # stops the decode thread before its container goes
            if not _on_own_decoder(self.container):
                self.container.close()
        if seen == 0:
            why = f" ({errors[0][0].lower()}{errors[0][1:]})" if errors else ""
            raise VideoError(f"{self.path}: no decodable video frames{why}")
        if self.decoded == 0:
            raise VideoError(f"{self.path}: no frames between start {start} s and end {end} s")
        if not start and end is None and self.info.frames and seen < self.info.frames:
            # The index promised more frames than the file holds: cut off at the end.
            errors.append(f"{self.info.frames - seen} of {self.info.frames} frames missing")
        if errors:
            warnings.warn(f"{self.path}: damaged or truncated video ({errors[0]}); "
                          f"kept the {self.decoded} frames that decoded", stacklevel=3)


def iter_frames(path: str | Path, *, start: float | None = None, end: float | None = None,
                size_hint: tuple[int, int] | None = None,
                crop: tuple[int, int, int, int] | None = None,
                fps: float | None = None) -> VideoReader:
    """Stream RGB uint8 frames of ``path`` with their timestamps (seconds from the video start).

    ``start``/``end`` select a time range [start, end). ``size_hint=(H, W)`` returns frames
    area-resized to exactly that size, after ``crop=(x, y, w, h)`` (source pixels), both done
    during colour conversion. ``fps`` resamples on timestamps. Opening errors raise ``VideoError``
    at once; zero decodable frames raises while iterating; a damaged or truncated file keeps the
    frames that decode and warns once at the end.
    """
    return VideoReader(path, start=start, end=end, size_hint=size_hint, crop=crop, fps=fps)


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, *, crf: int = 18,
                pix_fmt: str = "yuv444p", preset: str = "medium") -> int:
    """Write uint8 ``(H, W, 3)`` RGB frames to ``path``; returns the number of frames written.

    ``.gif`` goes through Pillow (loops forever; note that Pillow merges identical consecutive
    frames into one longer frame). Any other suffix is H.264 (libx264 with ``crf``, ``pix_fmt``
    and ``preset``; see the module docstring for why yuv444p). The file appears atomically:
    written under a temp name in the same directory, then renamed.
    """
    path = Path(path)
    if not fps or fps <= 0:
        raise VideoError(f"{path}: fps must be positive, got {fps}")
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        frames = _checked(path, frames)
        if path.suffix.lower() == ".gif":
            return _write_gif(str(tmp), frames, rate)
        return _write_h264(str(tmp), frames, rate, crf, pix_fmt, preset, path)


def _checked(path: Path, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    shape = None
    for frame in frames:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise VideoError(f"{path}: frames must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        if shape is not None and frame.shape != shape:
            raise VideoError(f"{path}: frame size changed from {shape} to {frame.shape}")
        shape = frame.shape
        yield frame
    if shape is None:
        raise VideoError(f"{path}: no frames to write")


def _write_h264(tmp: str, frames: Iterator[np.ndarray], rate: Fraction, crf: int, pix_fmt: str,
                preset: str, name: Path) -> int:
    suffix = Path(tmp).suffix.lower()
    # faststart puts the index first, so a truncated copy still decodes up to the cut.
    options = {"movflags": "faststart"} if suffix in (".mp4", ".mov", ".m4v") else {}
    count = 0
    with av.open(tmp, "w", options=options) as container:
        stream = None
        for frame in frames:
            if stream is None:
                h, w = frame.shape[:2]
                if pix_fmt == "yuv420p" and (h % 2 or w % 2):
                    raise VideoError(f"{name}: yuv420p needs an even height and width, got {h}x{w}")
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
                stream.options = {"crf": str(crf), "preset": preset}
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = count
            vf.time_base = Fraction(1) / rate
            container.mux(stream.encode(vf))
            count += 1
        container.mux(stream.encode(None))
    return count


def _write_gif(tmp: str, frames: Iterator[np.ndarray], rate: Fraction) -> int:
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=round(1000 / float(rate)))
    return len(images)
