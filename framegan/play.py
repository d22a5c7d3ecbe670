"""python -m framegan.play: play the learned game in a local browser page; the keys are its actions.

Frames are ``(B, T, C, H, W)`` float in [-1, 1] inside the model and uint8 ``(H, W, 3)`` RGB on
the wire and in the saved video. G_ema runs at batch 1: the window holds the last K frames, each
step appends G's prediction for the keys held, so the game goes on from its own frames.

    python -m framegan.play --checkpoint runs/<run>/checkpoints/last.pt [--context game.mp4]

Three modes, from the checkpoint:
  actions  the model was trained on recorded actions (``G.num_actions`` > 0): keys press them
           (ALE names -> arrow keys + Space, combinations = several keys held; no key = NOOP)
  latent   no actions but discrete noise (``model.z_classes``): keys 1..C pick the latent class,
           no key = a class drawn at random every frame
  free     neither: z is drawn afresh every frame (a deterministic G just plays on)

Transport: a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 only, answering only its own page
(Host and Origin checked). The page (``play_page.html``) opens a WebSocket (``/ws``, RFC 6455
server side in ``framegan/websocket.py``), sends the keys it holds and draws the raw RGB frame that
comes back into a canvas, one message in turn, paced at ``--fps`` (0: as fast as the server
answers, for benchmarks/play_speed.py). Chosen by measurement over a ``fetch`` per frame, which
cost chromium ~5x the CPU per frame (see framegan/websocket.py); on 2 cores that CPU is G's.

Endpoints: ``GET /`` page, ``GET /info`` JSON (mode, controls, fps, size), ``GET /ws`` the game
channel, ``POST /restart`` and ``POST /step`` the same over plain HTTP (body: held keys, one a
line; frame in the body, action in ``X-Action``: for scripts and tests), ``GET /session.mp4`` (the
frames played so far, encoded on request), ``POST /ping`` / ``/bye`` (page life: ``/bye``, or the
last WebSocket closing, stops the server after a grace period that a reload cancels; a page that
sends nothing for ``--idle-timeout`` seconds stops it too).
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import webbrowser
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import numpy as np
import torch
from einops import rearrange, repeat

from framegan import websocket
from framegan.atomic import atomic_path, output_dir
from framegan.cli import Parser, UsageError, add_threads, os_error, set_threads
from framegan.frames import to_model, to_pixels
from framegan.inference import BACKENDS, BackendError, Predictor, predictor, prepare
from framegan.rollout import context_from_store, context_from_video

HOST = "127.0.0.1"           # never 0.0.0.0: the page runs a model on this machine for this user
BYE_GRACE_S = 3.0            # a reload sends /bye then loads the page again within this time
LATENT_PREFIX = "latent "     # a latent class's control name: "latent 3"
MAX_BODY = 1 << 16            # bytes of a POST body (held key names): more is refused (413)
UNSUPPORTED = (1003).to_bytes(2, "big")  # WebSocket close code: a message the page never sends
IDLE_TIMEOUT_S = 120.0       # Chrome wakes timers in a hidden tab once a minute; twice that is gone
RECORD_BYTES = 256 * 2**20   # frames kept for "Save mp4" (the last ~21,800 at 64x64)
VIDEO_SIDE = 256             # the saved video is nearest-neighbour upscaled to about this many px
RESTART_KEY = "r"
NOOP_NAMES = {"NOOP", "NOACTION", "NONE", "IDLE", "NOTHING", "STAY", "WAIT"}
# Keys for actions and latent classes that have no better key: digits first (the "1..C").
SPARE_KEYS = [*"1234567890", *"qwetyuiopasdfghjklzxcvbnm"]  # no "r": it restarts
ALE_PARTS = {"UP": "ArrowUp", "DOWN": "ArrowDown", "LEFT": "ArrowLeft", "RIGHT": "ArrowRight", "FIRE": "Space"}
ALE_NAME = re.compile(r"^(?:(?:UP|DOWN|LEFT|RIGHT|FIRE)[_\- ]?)+$")
# Other games' names (VizDoom, Procgen, MineRL, ...) by keyword; strafing gets A/D so that it
# does not collide with turning on the arrows.
KEYWORDS = {"UP": "ArrowUp", "FORWARD": "ArrowUp", "NORTH": "ArrowUp",
            "DOWN": "ArrowDown", "BACK": "ArrowDown", "BACKWARD": "ArrowDown", "SOUTH": "ArrowDown",
            "LEFT": "ArrowLeft", "WEST": "ArrowLeft", "RIGHT": "ArrowRight", "EAST": "ArrowRight",
            "FIRE": "Space", "ATTACK": "Space", "SHOOT": "Space", "USE": "Space", "ACTION": "Space",
            "JUMP": "z", "CROUCH": "x", "SPRINT": "Shift"}
STRAFE = {"LEFT": "a", "RIGHT": "d"}


# ----------------------------------------------------------------------------- controls
@dataclass(frozen=True)
class Control:
    name: str                # what the page shows: the action's name, or "latent 3"
    keys: tuple[str, ...]    # KeyboardEvent.key values (" " as "Space", letters lower case), held together
    value: int               # index into the checkpoint's action values, or the latent class


def _ale_keys(name: str) -> tuple[str, ...] | None:
    """ALE-style name -> its keys in the order of ``ALE_PARTS`` (``()`` for NOOP); None if not ALE."""
    upper = name.strip().upper()
    if re.sub(r"[^A-Z]", "", upper) in NOOP_NAMES:
        return ()
    if not ALE_NAME.match(upper):
        return None
    parts = set(re.findall(r"UP|DOWN|LEFT|RIGHT|FIRE", upper))
    return tuple(key for part, key in ALE_PARTS.items() if part in parts)


def _keyword_keys(name: str) -> tuple[str, ...] | None:
    """Name made of known keywords (``MOVE_FORWARD``, ``TURN_LEFT``, ``STRAFE_RIGHT`` ...) -> keys."""
    words = [w for w in re.split(r"[^A-Z]+", name.strip().upper()) if w]
    if re.sub(r"[^A-Z]", "", name.upper()) in NOOP_NAMES:
        return ()
    strafe = "STRAFE" in words
    keys = []
    for w in words:
        if w in ("MOVE", "TURN", "STRAFE", "LOOK", "GO", "WALK", "RUN"):
            continue
        key = STRAFE.get(w) if strafe and w in STRAFE else KEYWORDS.get(w)
        if key is None:
            return None
        keys.append(key)
    return tuple(dict.fromkeys(keys)) if keys else None


def action_controls(names: Sequence[str]) -> tuple[list[Control], int]:
    """Keys for a game's actions -> (controls, index of the action played with no key held).

    All names ALE-style: arrows + Space, a combination = its keys held together. Otherwise by
    keyword if that gives every action its own keys; otherwise spare keys 1, 2, ... in order. No
    key held = the NOOP-like action if the game has one, else the first action.
    """
    for mapper in (_ale_keys, _keyword_keys):
        keys = [mapper(n) for n in names]
        pressed = [k for k in keys if k]
        if all(k is not None for k in keys) and len(set(pressed)) == len(pressed) and len(pressed) >= len(keys) - 1:
            break
    else:
        keys = [(SPARE_KEYS[i],) if i < len(SPARE_KEYS) else () for i in range(len(names))]
    default = next((i for i, n in enumerate(names) if re.sub(r"[^A-Z]", "", n.upper()) in NOOP_NAMES), 0)
    return [Control(str(n), tuple(k), i) for i, (n, k) in enumerate(zip(names, keys))], default


def latent_controls(classes: int) -> list[Control]:
    return [Control(f"{LATENT_PREFIX}{c + 1}", (SPARE_KEYS[c],) if c < len(SPARE_KEYS) else (), c)
            for c in range(classes)]


def choose(controls: Sequence[Control], held: Sequence[str]) -> Control | None:
    """The control the held keys press: the one with the most keys, all of them held (UP + RIGHT
    held = UPRIGHT where the game has it, else the direction pressed last); None if no key matches."""
    order = {k: i for i, k in enumerate(held)}
    best, rank = None, None
    for c in controls:
        if c.keys and all(k in order for k in c.keys):
            r = (len(c.keys), max(order[k] for k in c.keys))
            if rank is None or r > rank:
                best, rank = c, r
    return best


# ----------------------------------------------------------------------------- the game
def predict(G, window: torch.Tensor, z: torch.Tensor | None, action: torch.Tensor | None) -> torch.Tensor:
    """The one call into G (a ``framegan.inference.Predictor``: ONNX Runtime on CPUs by default):
    window ``(1, K, C, H, W)`` -> next frame ``(1, C, H, W)`` in [-1, 1]."""
    with G.active() if isinstance(G, Predictor) else torch.no_grad():
        return G(window, z, action).float().clamp(-1.0, 1.0)


def key_input(G, pressed: Sequence[int], index: int) -> torch.Tensor:
    """G's action input for pressing ``index`` after the keys ``pressed`` before (oldest first):
    ``(1,)``, or ``(1, L)`` for a model with a key history of L; before the first key pressed, the
    first one counts as held (as the rollout's default)."""
    L = getattr(G, "action_history", 1)
    if L == 1:
        return torch.tensor([index])
    keys = [*pressed, index][-L:]
    return torch.tensor([[keys[0]] * (L - len(keys)) + keys])


class Game:
    """One play session: the window of the last K frames, the controls, and the frames played."""

    def __init__(self, G: torch.nn.Module, context: np.ndarray, mode: str, controls: list[Control],
                 default: int | None, seed: int | None = None, record_frames: int | None = None):
        self.G, self.context, self.mode = G, np.ascontiguousarray(context), mode
        self.controls, self.default = controls, default
        self.noise = torch.Generator()
        if seed is None:
            self.noise.seed()
        else:
            self.noise.manual_seed(seed)
        frame_bytes = context[0].nbytes
        self.recorded: deque[np.ndarray] = deque(maxlen=record_frames or max(1, RECORD_BYTES // frame_bytes))
        self.lock = threading.Lock()   # one step at a time, whichever page or thread asks
        self.window = self._start_window()
        self.steps = 0
        self.pressed: list[int] = []  # the keys played, for a model that sees the last few (action_history)

    @property
    def size(self) -> tuple[int, int]:
        return self.context.shape[1], self.context.shape[2]

    def _start_window(self) -> torch.Tensor:
        return rearrange(to_model(self.context), "k c h w -> 1 k c h w")

    def restart(self) -> np.ndarray:
        """Back to the context; returns its last frame (what the player sees first)."""
        with self.lock:
            self.window, self.steps, self.pressed = self._start_window(), 0, []
            frame = self.context[-1]
            self.recorded.append(frame)
            return frame

    def step(self, held: Sequence[str] = ()) -> tuple[np.ndarray, str]:
        """One frame for the keys held -> (uint8 (H, W, 3), what was played: action / class name)."""
        control = choose(self.controls, held)
        with self.lock:
            action, classes, label = None, None, ""
            if self.mode == "actions":
                index = control.value if control else self.default
                action, label = key_input(self.G, self.pressed, index), self.controls[index].name
                self.pressed = [*self.pressed, index][-max(getattr(self.G, "action_history", 1) - 1, 1):]
            elif self.mode == "latent":
                cls = control.value if control else int(torch.randint(len(self.controls), (1,),
                                                                      generator=self.noise))
                classes, label = torch.tensor([cls]), self.controls[cls].name + ("" if control else " (random)")
            z = self.G.sample_z(1, device="cpu", generator=self.noise, classes=classes) if self.G.z_dim else None
            y = predict(self.G, self.window, z, action)
            self.window = torch.cat([self.window[:, 1:], rearrange(y, "b c h w -> b 1 c h w")], dim=1)
            frame = to_pixels(y[0])
            self.recorded.append(frame)
            self.steps += 1
            return frame, label

    def played(self) -> list[np.ndarray]:
        with self.lock:
            return list(self.recorded)


def make_game(G, cfg, store_info: dict, context: np.ndarray, seed: int | None = None) -> Game:
    """The mode and controls a checkpoint calls for (module docstring)."""
    if G.num_actions > 0:
        actions = store_info.get("actions") or {}
        names = [str(n) for n in actions.get("names") or []]
        if len(names) != G.num_actions:
            names = [str(v) for v in actions.get("values") or range(G.num_actions)][:G.num_actions]
            names += [str(i) for i in range(len(names), G.num_actions)]
        controls, default = action_controls(names)
        return Game(G, context, "actions", controls, default, seed)
    if cfg.model.z_classes > 0:
        return Game(G, context, "latent", latent_controls(cfg.model.z_classes), None, seed)
    return Game(G, context, "free", [], None, seed)


# ----------------------------------------------------------------------------- HTTP
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"    # keep-alive for the HTTP endpoints
    disable_nagle_algorithm = True   # else a small reply can wait ~40 ms on a delayed ACK
    timeout = 60                     # an idle keep-alive connection ends (not the game's WebSocket)
    server: PlayServer

    def setup(self):
        super().setup()
        self.server.track(self.connection, True)

    def finish(self):
        self.server.track(self.connection, False)
        super().finish()

    def log_message(self, format, *args):  # noqa: A002 - quiet: one message per frame
        pass

    def _send(self, code: int, body: bytes = b"", kind: str = "application/octet-stream", **headers):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _body(self) -> str | None:
        """The request body (held key names), or None after answering 400/413: a length that is
        no number, negative (a read to the end of the connection) or beyond any key list."""
        text = (self.headers.get("Content-Length") or "0").strip()
        if not text.isdecimal():
            self._send(400, b"bad Content-Length", "text/plain")
            return None
        length = int(text)
        if length > MAX_BODY:
            self._send(413, b"body too large", "text/plain")
            return None
        return self.rfile.read(length).decode("utf-8", "replace") if length else ""

    def _trusted(self) -> bool:
        """Only this machine's page: the Host must be ours (a DNS-rebinding site's is not) and so
        must any Origin (WebSockets and simple POSTs are not stopped by CORS)."""
        port = self.server.server_port
        ours = {f"{HOST}:{port}", f"localhost:{port}"}
        origin = self.headers.get("Origin")
        if self.headers.get("Host") in ours and (origin is None or origin.split("://", 1)[-1] in ours):
            return True
        self._send(403, b"forbidden: not this server's page", "text/plain")
        return False

    def do_GET(self):
        if not self._trusted():
            return
        path = self.path.split("?", 1)[0]
        self.server.seen(page=path in ("/", "/info"))
        if path == "/":
            self._send(200, self.server.page, "text/html; charset=utf-8")
        elif path == "/info":
            self._send(200, json.dumps(self.server.info()).encode(), "application/json")
        elif path == "/ws":
            self._websocket()
        elif path == "/session.mp4":
            self._video()
        elif path == "/favicon.ico":
            self._send(204)
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self):
        if not self._trusted():
            return
        path, body = self.path.split("?", 1)[0], self._body()
        if body is None:
            return
        if path == "/bye":
            self.server.bye()
            self._send(204)
            return
        self.server.seen()
        if path == "/ping":
            self._send(204)
        elif path in ("/restart", "/step"):
            frame, head = self.server.play(path[1:], body)
            self._send(200, frame.tobytes(), X_Action=quote(head["action"]), X_Step_Ms=f"{head['step_ms']:.2f}",
                       X_Frame=str(head["frame"]))
        else:
            self._send(404, b"not found", "text/plain")

    def _websocket(self):
        """The page's game channel: text message ``step|restart\\n<held keys, one a line>`` ->
        binary ``[uint32 LE n][n bytes of JSON {action, step_ms, frame}][H*W*3 RGB bytes]``."""
        key = self.headers.get("Sec-WebSocket-Key")
        if self.headers.get("Upgrade", "").lower() != "websocket" or not key:
            self._send(400, b"expected a WebSocket upgrade", "text/plain")
            return
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", websocket.accept_key(key))
        self.end_headers()
        self.close_connection = True
        # No read timeout on the game's channel: a hidden tab sends nothing for as long as it is
        # hidden; the idle timeout and the bye grace decide when the game ends (the handler's
        # 60 s socket timeout cut it after a minute and stopped the server).
        self.connection.settimeout(None)
        self.server.websocket_opened(True)
        try:
            while (message := websocket.read_message(self.rfile)) is not None:
                opcode, data = message
                if opcode == websocket.CLOSE:
                    self.wfile.write(websocket.frame(data[:2], websocket.CLOSE))
                    break
                if opcode == websocket.PING:
                    self.wfile.write(websocket.frame(data, websocket.PONG))
                    continue
                if opcode == websocket.PONG:
                    continue
                command, _, keys = data.decode("utf-8", "replace").partition("\n") \
                    if opcode == websocket.TEXT else ("", "", "")
                if command not in ("step", "restart"):  # binary or another command: not the page's
                    self.wfile.write(websocket.frame(UNSUPPORTED, websocket.CLOSE))
                    break
                frame, head = self.server.play(command, keys)
                meta = json.dumps(head).encode()
                self.wfile.write(websocket.frame(struct.pack("<I", len(meta)) + meta + frame.tobytes()))
        except websocket.WebSocketError:
            pass  # not the page: drop the connection
        finally:
            self.server.websocket_opened(False)

    def _video(self):
        frames = self.server.game.played()
        if not frames:
            self._send(404, b"nothing played yet", "text/plain")
            return
        data = self.server.encode(frames)
        if data is None:  # the server is stopping
            self._send(503, b"server stopping", "text/plain")
            return
        self._send(200, data, "video/mp4", Content_Disposition='attachment; filename="framegan-play.mp4"')


class PlayServer(ThreadingHTTPServer):
    """The game's web server; ``serve_forever`` returns when the page is gone (``stop_reason``)."""

    # Handler threads are joined on close (server_close, block_on_close), not left as daemons:
    # a daemon thread still inside ORT or torch when the interpreter finalizes is killed by
    # pthread_exit through C++ frames, and the process aborts ("terminate called without an
    # active exception", 1 run in 40 of tests/test_play.py's Ctrl-C flow). close() shuts every
    # connection first, so they all return promptly.
    daemon_threads = False
    block_on_close = True

    def __init__(self, game: Game, port: int = 0, fps: float = 15.0, title: str = "framegan",
                 grace: float = BYE_GRACE_S, idle_timeout: float = IDLE_TIMEOUT_S, video_fps: float | None = None):
        self.game, self.fps, self.title = game, fps, title
        self.video_fps = video_fps or fps or 15.0
        self.grace, self.idle_timeout = grace, idle_timeout
        self.page = resources.files("framegan").joinpath("play_page.html").read_bytes()
        self.stop_reason: str | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._last_seen, self._page_seen, self._bye_at, self._sockets = time.monotonic(), False, None, 0
        self._stopping = threading.Event()
        self._tmpdir: str | None = None
        self._watchdog: threading.Thread | None = None
        super().__init__((HOST, port), Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_port}/"

    def play(self, command: str, keys: str) -> tuple[np.ndarray, dict]:
        """``restart`` or ``step`` (with the held keys, one a line) -> (frame, what the page shows)."""
        self.seen()
        t0 = time.perf_counter()
        if command == "restart":
            frame, label = self.game.restart(), ""
        else:
            frame, label = self.game.step([k for k in keys.splitlines() if k])
        return frame, {"action": label, "step_ms": (time.perf_counter() - t0) * 1e3, "frame": self.game.steps}

    # --- page life: /bye or the last WebSocket closing starts the grace period; a page load ends it
    def seen(self, page: bool = False) -> None:
        with self._lock:
            self._last_seen = time.monotonic()
            if page:
                self._page_seen, self._bye_at = True, None

    def bye(self) -> None:
        with self._lock:
            self._bye_at = time.monotonic()

    def websocket_opened(self, opened: bool) -> None:
        self.seen(page=opened)
        with self._lock:
            self._sockets += 1 if opened else -1
            if not self._sockets and self._bye_at is None:
                self._bye_at = time.monotonic()  # a crashed tab sends no /bye, but its socket closes

    def _why_stop(self) -> str | None:
        now = time.monotonic()
        with self._lock:
            if self._bye_at is not None and now - self._bye_at >= self.grace:
                if self._sockets:  # another tab still plays
                    self._bye_at = None
                    return None
                return "the page was closed"
            if self._page_seen and self.idle_timeout and now - self._last_seen >= self.idle_timeout:
                return f"no word from the page for {self.idle_timeout:g} s"
        return None

    def _watch(self) -> None:
        while not self._stopping.wait(0.05):
            reason = self._why_stop()
            if reason:
                self.stop_reason = reason
                self.shutdown()  # serve_forever (another thread) returns
                return

    def serve_forever(self, poll_interval: float = 0.1) -> None:
        self._watchdog = threading.Thread(target=self._watch, name="play-watchdog", daemon=True)
        self._watchdog.start()
        super().serve_forever(poll_interval)

    # --- connections, so that stopping does not wait for idle keep-alive sockets
    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            (self._connections.add if alive else self._connections.discard)(conn)

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)) or self._stopping.is_set():
            return  # the page went away mid-request, or we are closing its socket
        print(f"warning: request failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    def close(self) -> None:
        """Stop everything this server started: watchdog, connections, handler threads, temp files."""
        self._stopping.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # a handler waiting for the next request wakes up
            except OSError:
                pass
        self.server_close()  # joins the handler threads (ThreadingMixIn.block_on_close)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    # --- the saved session
    def info(self) -> dict:
        h, w = self.game.size
        default = self.game.controls[self.game.default].name if self.game.default is not None else None
        return {"title": self.title, "size": [h, w], "fps": self.fps, "mode": self.game.mode,
                "controls": [asdict(c) for c in self.game.controls], "default": default,
                "restart_key": RESTART_KEY}

    def encode(self, frames: list[np.ndarray]) -> bytes | None:
        """mp4 bytes of ``frames`` (nearest-neighbour upscaled); None if the server stops meanwhile."""
        from framegan.video import write_video

        with self._lock:
            if self._tmpdir is None:
                self._tmpdir = tempfile.mkdtemp(prefix="framegan-play-")
        h, w = frames[0].shape[:2]
        up = max(1, VIDEO_SIDE // max(h, w))
        # After upscaling by 2+ each 2x2 chroma block lies inside one source pixel, so yuv420p
        # (which browsers and phones play; yuv444p they do not) loses no colour.
        pix_fmt = "yuv420p" if (h * up) % 2 == 0 and (w * up) % 2 == 0 and up > 1 else "yuv444p"

        def scaled() -> Iterator[np.ndarray]:
            for f in frames:
                if self._stopping.is_set():
                    raise InterruptedError("server stopping")  # write_video removes its temp file
                yield repeat(f, "h w c -> (h u) (w v) c", u=up, v=up)

        fd, path = tempfile.mkstemp(suffix=".mp4", dir=self._tmpdir)
        os.close(fd)
        try:
            write_video(path, scaled(), self.video_fps, pix_fmt=pix_fmt, preset="veryfast")
            return Path(path).read_bytes()
        except InterruptedError:
            return None
        finally:
            Path(path).unlink(missing_ok=True)


def bind(game: Game, port: int, **kwargs) -> tuple[PlayServer, str | None]:
    """The server on ``port`` (0 = any free one); if that port is taken, on another, with a note."""
    try:
        return PlayServer(game, port, **kwargs), None
    except OSError as e:
        if port == 0 or e.errno not in (errno.EADDRINUSE, errno.EACCES):
            raise
        server = PlayServer(game, 0, **kwargs)
        why = "is in use" if e.errno == errno.EADDRINUSE else "is not allowed for this user"
        return server, f"port {port} {why}; using {server.server_port} instead"


def open_browser(url: str) -> bool:
    """Open ``url`` in a graphical browser; False where there is none."""
    if (sys.platform.startswith("linux") and not os.environ.get("BROWSER")
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))):
        return False  # no display: webbrowser would start a text browser (lynx, w3m) in this terminal
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


# ----------------------------------------------------------------------------- context
def first_segment(path: Path, K: int, start: int) -> int:
    """The first store segment with ``start`` (>= K) frames."""
    from framegan.store import open_store

    store = open_store(path)
    for i, seg in enumerate(store.segments):
        if len(seg) >= start:
            return i
    raise UsageError(f"{path}: no segment has the {start} frames a context of {K} needs")


def load_context(source: str | None, cfg, store_info: dict, K: int, segment: int | None,
                 start: int | None) -> tuple[np.ndarray, float, str]:
    """(uint8 (K, H, W, 3) context, fps, description) from --context or the training store."""
    if source is None:
        src = Path(cfg.data.root)
        if not (src / "manifest.json").exists():
            raise UsageError(f"no --context given and the checkpoint's training store {src} is not here; "
                             "pass --context VIDEO_OR_STORE")
    else:
        src = Path(source)
        if not src.exists():
            raise UsageError(f"{src}: no such video file or frame store")
    start = K if start is None else start
    if src.is_dir():
        segment = first_segment(src, K, start) if segment is None else segment
        context, _, fps = context_from_store(src, store_info, K, 0, segment, start)
        where = f"{src} segment {segment} frames {start - K}..{start - 1}"
    else:
        context, _, fps = context_from_video(src, store_info, K, 0, start)
        where = f"{src} frames {start - K}..{start - 1}"
    return context, float(fps), where


# ----------------------------------------------------------------------------- command line
def parse_script(text: str, controls: Sequence[Control]) -> list[Control | None]:
    """``LEFT:10,UP:5,none:3`` (control names or, for latent classes, 1..C; ``none`` = no key) ->
    one entry per frame. A control's own name always wins: a store without key names names its
    actions by their ids ("0", "1", ...), which 1..C must not shadow."""
    latent = {str(c.value + 1): c for c in controls if c.name.startswith(LATENT_PREFIX)}
    by_name = latent | {c.name.lower(): c for c in controls}
    frames: list[Control | None] = []
    for part in text.split(","):
        name, _, count = part.strip().partition(":")
        key = name.strip().lower()
        if key not in by_name and key != "none":
            raise UsageError(f"--keys: {name.strip()!r} is none of {', '.join(c.name for c in controls) or 'the'} "
                             f"controls (or 'none')")
        if not count.strip().isdecimal() or int(count) < 1:
            raise UsageError(f"--keys: {part.strip()!r} needs a frame count, e.g. LEFT:10")
        frames += [by_name.get(key)] * int(count)
    return frames


def record_session(game: Game, script: Sequence[Control | None], out: Path, fps: float, upscale: int = 4) -> int:
    """Play ``script`` (one control per frame, None = no key) from the context and write the frames,
    upscaled, with the key played under each, to ``out`` (.gif or .mp4). Returns frames written."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)

    def labelled(frame: np.ndarray, text: str) -> np.ndarray:
        big = repeat(frame, "h w c -> (h u) (w v) c", u=upscale, v=upscale)
        img = Image.new("RGB", (big.shape[1], big.shape[0] + 18), "black")
        img.paste(Image.fromarray(big))
        ImageDraw.Draw(img).text((4, big.shape[0] + 2), text, fill="white", font=font)
        return np.asarray(img)

    frames = [labelled(f, "context") for f in game.context]
    game.restart()
    for control in script:
        frame, label = game.step(control.keys if control else ())
        frames.append(labelled(frame, f"key: {label or 'none'}"))
    if out.suffix.lower() == ".gif":
        from framegan.summaries import gif_bytes

        with atomic_path(out) as tmp:
            tmp.write_bytes(gif_bytes(np.stack(frames), fps=fps))
    else:
        from framegan.video import write_video

        write_video(out, iter(frames), fps)
    return len(frames)


def parse_args(argv=None) -> argparse.Namespace:
    ap = Parser(prog="python -m framegan.play", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoint file (G_ema is used)")
    ap.add_argument("--context", default=None,
                    help="video file or frame store to start from (default: the checkpoint's training store)")
    ap.add_argument("--segment", type=int, default=None,
                    help="store segment (default: the first one long enough)")
    ap.add_argument("--start", type=int, default=None,
                    help="index of the first played frame: the context is the K frames before it (default: K)")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    ap.add_argument("--no-browser", action="store_true", help="only print the URL")
    ap.add_argument("--fps", type=float, default=None,
                    help="frames per second (default: the store's; 0 = as fast as possible)")
    ap.add_argument("--backend", choices=BACKENDS, default="auto",
                    help="inference backend (auto: the fastest measured for batch 1; see framegan.inference)")
    add_threads(ap)
    ap.add_argument("--seed", type=int, default=None, help="noise seed (default: a fresh one)")
    ap.add_argument("--keys", default=None, metavar="NAME:N,...",
                    help="no server: play this key script (e.g. LEFT:10,UP:8,none:4) and write it to --out")
    ap.add_argument("--out", default=None, help="with --keys: the session with the keys shown (.gif or .mp4)")
    ap.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S,
                    help="stop when the page has sent nothing for this many seconds (0 = never)")
    args = ap.parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    if args.fps is not None and args.fps < 0:
        raise UsageError(f"--fps must be >= 0, got {args.fps}")
    for name in ("segment", "start"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise UsageError(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.idle_timeout < 0:
        raise UsageError(f"--idle-timeout must be >= 0, got {args.idle_timeout}")
    if (args.keys is None) != (args.out is None):
        raise UsageError("--keys and --out go together (a scripted session written to a file)")
    if args.out is not None and Path(args.out).suffix.lower() not in (".gif", ".mp4"):
        raise UsageError(f"--out {args.out}: a scripted session is written as .gif or .mp4")
    return args


def describe(game: Game) -> str:
    if game.mode == "actions":
        keys = ", ".join(f"{c.name}={'+'.join(c.keys) or 'no key'}" for c in game.controls)
        return f"{len(game.controls)} actions ({keys})"
    if game.mode == "latent":
        return f"latent actions: keys 1..{len(game.controls)} pick a class, no key = random"
    return "no actions: z is drawn afresh every frame"


def load_model(checkpoint: str | Path, backend: str = "auto"):
    """(G behind the inference backend play runs, config, store info) of a checkpoint."""
    from framegan.checkpoint import load_generator

    G, cfg, store_info = load_generator(checkpoint, "cpu")
    try:
        # no spinning: play is paced and shares the cores with the browser; spinning measured
        # 158 vs 151 frames/s unpaced, for 9.6 vs 6.9 ms of server CPU per frame
        # (benchmarks/play_speed.py, 2-core Xeon)
        return predictor(prepare(G, "cpu"), backend, "auto", checkpoint=checkpoint, spin=False), cfg, store_info
    except BackendError as e:
        raise UsageError(str(e)) from None


def run(args: argparse.Namespace) -> str:
    """Serve until the page is gone (or write the ``--keys`` session); returns why it stopped."""
    set_threads(args.threads)
    # A scripted session's --out is checked first: one that cannot be written fails before the model loads.
    out = output_dir(Path(args.out).parent, args.out) if args.keys is not None else contextlib.nullcontext()
    with out:
        return _play(args)


def _play(args: argparse.Namespace) -> str:
    G, cfg, store_info = load_model(args.checkpoint, args.backend)
    context, context_fps, where = load_context(args.context, cfg, store_info, G.context, args.segment, args.start)
    fps = args.fps if args.fps is not None else float(store_info.get("fps") or context_fps)
    game = make_game(G, cfg, store_info, context, args.seed)
    predict(G, game.window, G.sample_z(1) if G.z_dim else None,
            key_input(G, [], 0) if G.num_actions else None)  # warm-up: ONNX export / kernels
    for note in G.notes:
        print(f"note: {note}", flush=True)
    if args.keys is not None:
        n = record_session(game, parse_script(args.keys, game.controls), Path(args.out), fps or context_fps or 15.0)
        print(f"wrote {args.out}: {n} frames ({G.context} context + {n - G.context} played), {describe(game)}")
        return "scripted session written"
    server, note = bind(game, args.port, fps=fps, title=f"framegan play: {Path(args.checkpoint).name}",
                        idle_timeout=args.idle_timeout, video_fps=fps or context_fps)
    try:
        h, w = game.size
        print(f"playing {args.checkpoint} from {where}: {h}x{w}, "
              f"{f'{fps:g} fps' if fps else 'as fast as possible'}, {describe(game)}", flush=True)
        if note:
            print(note, flush=True)
        print(server.url, flush=True)
        if not args.no_browser and not open_browser(server.url):
            print("no browser could be opened here: open the URL above; Ctrl-C stops", flush=True)
        server.serve_forever()
        return server.stop_reason or "stopped"
    finally:
        server.close()


def main(argv=None) -> int:
    from framegan.checkpoint import CheckpointError
    from framegan.preprocess import PreprocessError
    from framegan.store import StoreError
    from framegan.video import VideoError

    try:
        reason = run(parse_args(argv))
    except (UsageError, CheckpointError, StoreError, VideoError, PreprocessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. no socket could be bound at all, an --out that cannot be written
        print(f"error: {os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped (Ctrl-C)", flush=True)
        return 0
    print(f"stopped: {reason}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
