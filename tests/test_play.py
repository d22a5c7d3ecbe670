"""python -m framegan.play: key mapping, the HTTP game server, page life, the CLI, and a real
headless browser (Debian's chromium driven by playwright).

Tiny untrained generators (width 8, depth 2, K=2, 16x16, output=direct so that the action and the
noise visibly change the frame). The browser test skips with a printed reason where chromium or
playwright is missing, and fails instead under CI (``.ci/run`` sets CI=1 and installs both).
"""
from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from PIL import Image

from framegan import play, websocket
from framegan.checkpoint import load_generator, save_checkpoint
from framegan.config import load_config, to_dict
from framegan.nets import build_generator
from framegan.play import (
    PlayServer,
    UsageError,
    action_controls,
    bind,
    choose,
    key_input,
    latent_controls,
    load_context,
    main,
    make_game,
)
from framegan.store import StoreWriter
from framegan.video import iter_frames

K, SIZE, FPS = 2, 16, 10.0
ROOT = Path(__file__).parents[1]
ALE = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT",
       "UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE",
       "DOWNLEFTFIRE"]


def make_checkpoint(path: Path, actions: int = 3, z_dim: int = 0, z_classes: int = 0, names=None,
                    root: Path | None = None) -> Path:
    """A real checkpoint (training-state keys) of an untrained tiny G."""
    noisy = z_dim + z_classes > 0
    cfg = load_config(None, ["model.width=8", "model.depth=2", f"model.z_dim={z_dim}",
                             f"model.z_classes={z_classes}", f"model.actions={actions}", "model.output=direct",
                             f"data.context={K}", f"loss.variety_k={4 if noisy else 1}",
                             f"data.root={root or path.parent / 'no-such-store'}"])
    torch.manual_seed(0)
    weights = build_generator(cfg.model, cfg.data.context).state_dict()
    names = names or ["NOOP", "RIGHT", "LEFT"][:actions]
    store = {"size": [SIZE, SIZE], "crop": "none", "fps": FPS,
             "actions": {"values": [0, 3, 4][:actions] if actions == 3 else list(range(actions)),
                         "names": names if actions else []}}
    save_checkpoint(path, {"step": 0, "config": to_dict(cfg), "store": store, "G": weights, "G_ema": weights})
    return path


def write_store(path: Path, lengths=(6,), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with StoreWriter(path, size=(SIZE, SIZE), fps=FPS) as w:
        for n in lengths:
            for _ in range(n):
                w.add(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), source="test")
            w.cut()
    return path


def game_for(ckpt: Path, seed: int = 0):
    G, cfg, store_info = load_generator(ckpt)
    context = np.random.default_rng(1).integers(0, 256, (K, SIZE, SIZE, 3), dtype=np.uint8)
    return make_game(G, cfg, store_info, context, seed=seed)


class Served:
    """A PlayServer serving from a thread, and a keep-alive client for it."""

    def __init__(self, game, **kwargs):
        self.server = PlayServer(game, 0, **kwargs)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.server.server_port, timeout=30)

    def request(self, method: str, path: str, body: str = ""):
        self.conn.request(method, path, body=body.encode())
        r = self.conn.getresponse()
        return r, r.read()

    def step(self, *keys: str):
        r, data = self.request("POST", "/step", "\n".join(keys))
        assert r.status == 200
        return np.frombuffer(data, np.uint8).reshape(SIZE, SIZE, 3), unquote(r.getheader("X-Action"))

    def restart(self):
        r, data = self.request("POST", "/restart")
        assert r.status == 200
        return np.frombuffer(data, np.uint8).reshape(SIZE, SIZE, 3)

    def close(self):
        self.conn.close()
        self.server.shutdown()
        self.thread.join(10)
        self.server.close()


@pytest.fixture
def served():
    opened = []

    def start(game, **kwargs):
        s = Served(game, **kwargs)
        opened.append(s)
        return s
    yield start
    for s in opened:
        s.close()


# ----------------------------------------------------------------------------- key mapping
def test_ale_names_map_to_arrows_and_space():
    controls, default = action_controls(ALE)
    keys = {c.name: set(c.keys) for c in controls}
    assert ALE[default] == "NOOP" and keys["NOOP"] == set()
    assert keys["UP"] == {"ArrowUp"} and keys["FIRE"] == {"Space"}
    assert keys["DOWNLEFTFIRE"] == {"ArrowDown", "ArrowLeft", "Space"}
    assert choose(controls, ["ArrowUp", "ArrowRight"]).name == "UPRIGHT"
    assert choose(controls, ["Space", "ArrowUp", "ArrowRight"]).name == "UPRIGHTFIRE"
    assert choose(controls, []) is None and choose(controls, ["x"]) is None
    # Ms. Pac-Man has no FIRE: held keys without an exact combination -> the most keys, the last pressed.
    small, _ = action_controls(["NOOP", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT"])
    assert choose(small, ["ArrowUp", "ArrowRight", "Space"]).name == "UPRIGHT"
    assert choose(small, ["ArrowUp", "ArrowLeft"]).name == "LEFT"
    assert choose(small, ["ArrowLeft", "ArrowUp"]).name == "UP"


def test_other_names_by_keyword_else_spare_keys():
    controls, default = action_controls(["MOVE_FORWARD", "TURN_LEFT", "TURN_RIGHT", "ATTACK", "STRAFE_LEFT"])
    assert [c.keys for c in controls] == [("ArrowUp",), ("ArrowLeft",), ("ArrowRight",), ("Space",), ("a",)]
    assert default == 0  # no NOOP: the first action
    # tools/record_vizdoom.py's names
    doom, default = action_controls(["NOOP", "FORWARD", "BACKWARD", "TURN_LEFT", "TURN_RIGHT", "STRAFE_LEFT",
                                     "STRAFE_RIGHT", "ATTACK"])
    assert [c.keys for c in doom] == [(), ("ArrowUp",), ("ArrowDown",), ("ArrowLeft",), ("ArrowRight",), ("a",),
                                      ("d",), ("Space",)] and default == 0
    assert choose(doom, ["ArrowUp", "ArrowLeft"]).name == "TURN_LEFT"  # no combination: the key pressed last
    # MOVE_LEFT and TURN_LEFT would share a key: every action gets a digit instead.
    controls, default = action_controls(["NOOP", "MOVE_LEFT", "TURN_LEFT", "9"])
    assert [c.keys for c in controls] == [("1",), ("2",), ("3",), ("4",)] and default == 0
    controls, default = action_controls(["0", "1", "2", "3"])
    assert [c.keys for c in controls] == [("1",), ("2",), ("3",), ("4",)]
    assert all("r" not in c.keys for c in action_controls([str(i) for i in range(40)])[0])  # r restarts
    assert [c.keys for c in latent_controls(3)] == [("1",), ("2",), ("3",)]


# ----------------------------------------------------------------------------- the server
def test_key_input_is_the_last_keys_played_oldest_first():
    """What G gets for a key press: the press alone (one-key model), or the last L presses; before
    L presses, the first counts as held (as rollout's default). Restarting forgets the presses:
    test_step_keys_restart_and_info plays LEFT after RIGHT and must see the first LEFT's frames."""
    from types import SimpleNamespace

    one, three = SimpleNamespace(action_history=1), SimpleNamespace(action_history=3)
    assert key_input(one, [0, 2], 1).tolist() == [1]
    assert key_input(three, [], 1).tolist() == [[1, 1, 1]]
    assert key_input(three, [0], 1).tolist() == [[0, 0, 1]]
    assert key_input(three, [0, 2], 1).tolist() == [[0, 2, 1]]
    assert key_input(three, [5, 0, 2], 1).tolist() == [[0, 2, 1]]


def test_step_keys_restart_and_info(tmp_path, served):
    game = game_for(make_checkpoint(tmp_path / "a.pt"))
    s = served(game)
    r, body = s.request("GET", "/info")
    info = json.loads(body)
    assert info["mode"] == "actions" and info["size"] == [SIZE, SIZE] and info["default"] == "NOOP"
    assert [(c["name"], c["keys"]) for c in info["controls"]] == [
        ("NOOP", []), ("RIGHT", ["ArrowRight"]), ("LEFT", ["ArrowLeft"])]
    r, page = s.request("GET", "/")
    assert r.status == 200 and b"<canvas" in page and b"pixelated" in page

    def play(*held):
        assert np.array_equal(s.restart(), game.context[-1])
        return [s.step(*held) for _ in range(3)]

    left, right, left2, none = play("ArrowLeft"), play("ArrowRight"), play("ArrowLeft"), play()
    assert {a for _, a in left} == {"LEFT"} and {a for _, a in right} == {"RIGHT"} and {a for _, a in none} == {"NOOP"}
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(left, left2))  # G is deterministic here
    for (a, _), (b, _), (c, _) in zip(left, right, none):
        assert not np.array_equal(a, b) and not np.array_equal(a, c)
    assert s.request("GET", "/nope")[0].status == 404


def test_latent_mode_keys_pick_the_class(tmp_path, served):
    game = game_for(make_checkpoint(tmp_path / "l.pt", actions=0, z_classes=3))
    s = served(game)
    info = json.loads(s.request("GET", "/info")[1])
    assert info["mode"] == "latent" and [c["keys"] for c in info["controls"]] == [["1"], ["2"], ["3"]]
    by_class = {}
    for key in "123":
        s.restart()
        by_class[key] = s.step(key)
        s.restart()
        assert np.array_equal(s.step(key)[0], by_class[key][0])  # z is only the class here
    assert by_class["1"][1] == "latent 1"
    assert len({f.tobytes() for f, _ in by_class.values()}) == 3
    for _ in range(4):  # no key: a random class, one of the three frames
        s.restart()
        frame, label = s.step()
        assert label.endswith("(random)") and frame.tobytes() in {f.tobytes() for f, _ in by_class.values()}


def test_free_mode_draws_new_noise_every_frame(tmp_path, served):
    game = game_for(make_checkpoint(tmp_path / "f.pt", actions=0, z_dim=4))
    s = served(game)
    info = json.loads(s.request("GET", "/info")[1])
    assert info["mode"] == "free" and info["controls"] == [] and info["default"] is None
    firsts = []
    for _ in range(2):
        s.restart()
        firsts.append(s.step("ArrowLeft")[0])
    assert not np.array_equal(*firsts)


def test_session_mp4_download_decodes(tmp_path, served):
    game = game_for(make_checkpoint(tmp_path / "a.pt"))
    s = served(game, video_fps=FPS)
    assert s.request("GET", "/session.mp4")[0].status == 404  # nothing played yet
    s.restart()
    played = [s.step("ArrowLeft")[0] for _ in range(5)]
    r, data = s.request("GET", "/session.mp4")
    assert r.status == 200 and r.getheader("Content-Type") == "video/mp4"
    assert "attachment" in r.getheader("Content-Disposition")
    (tmp_path / "s.mp4").write_bytes(data)
    frames = [f.image for f in iter_frames(tmp_path / "s.mp4")]
    assert len(frames) == 6 and frames[0].shape == (256, 256, 3)  # context frame + 5, upscaled 16x
    small = frames[-1][::16, ::16].astype(int)  # nearest-neighbour upscale, so one pixel per block
    error = [np.abs(small - f).mean() for f in played]  # lossy H.264 (crf 18) of noise-like frames
    assert error[-1] < 8 and error[-1] < min(error[:-1]) / 2
    tmpdir = Path(s.server._tmpdir)
    assert tmpdir.is_dir() and not any(tmpdir.iterdir())  # the encoded file is gone once sent
    s.close()
    assert not tmpdir.exists()


def test_bye_stops_after_grace_unless_the_page_reloads(tmp_path, served):
    s = served(game_for(make_checkpoint(tmp_path / "a.pt")), grace=0.3, idle_timeout=0)
    s.request("POST", "/bye")
    s.request("GET", "/")          # the reload's page request cancels the bye
    time.sleep(0.7)
    assert s.thread.is_alive()
    s.request("POST", "/bye")
    s.thread.join(5)
    assert not s.thread.is_alive() and s.server.stop_reason == "the page was closed"


def test_silent_page_stops_the_server_but_none_opened_does_not(tmp_path, served):
    s = served(game_for(make_checkpoint(tmp_path / "a.pt")), grace=10, idle_timeout=0.4)
    time.sleep(0.7)
    assert s.thread.is_alive()     # no page has loaded yet (--no-browser: the user opens it later)
    s.request("GET", "/info")
    s.thread.join(5)
    assert not s.thread.is_alive() and s.server.stop_reason.startswith("no word from the page")


def test_close_waits_for_a_step_in_flight(tmp_path):
    """A handler thread still inside G when the interpreter exits aborts the process (daemon
    threads are killed mid-call): close() must return only after every handler has."""
    game = game_for(make_checkpoint(tmp_path / "a.pt"))
    s = Served(game)
    entered, done, step = threading.Event(), threading.Event(), game.step

    def slow_step(*args, **kwargs):
        entered.set()
        time.sleep(0.3)
        out = step(*args, **kwargs)
        done.set()
        return out

    game.step = slow_step

    def ask():
        try:
            s.request("POST", "/step")
        except (OSError, http.client.HTTPException):
            pass  # close() shuts the connection under the request
    client = threading.Thread(target=ask, daemon=True)
    client.start()
    assert entered.wait(10)
    s.close()
    assert done.is_set()
    client.join(10)


def test_port_in_use_picks_another(tmp_path):
    game = game_for(make_checkpoint(tmp_path / "a.pt"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server, note = bind(game, port)
        try:
            assert server.server_address[0] == "127.0.0.1" and server.server_port != port
            assert note == f"port {port} is in use; using {server.server_port} instead"
        finally:
            server.close()


def test_no_display_opens_no_browser(monkeypatch):
    import webbrowser

    from framegan import play

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    monkeypatch.setattr(sys, "platform", "linux")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        monkeypatch.delenv(name, raising=False)
    assert not play.open_browser("http://127.0.0.1:1/") and opened == []  # not lynx in the terminal
    monkeypatch.setenv("DISPLAY", ":0")
    assert play.open_browser("http://127.0.0.1:1/") and opened == ["http://127.0.0.1:1/"]


def test_default_context_is_the_training_store(tmp_path):
    store = write_store(tmp_path / "store", lengths=(1, 5))
    G, cfg, info = load_generator(make_checkpoint(tmp_path / "a.pt", root=store))
    context, fps, where = load_context(None, cfg, info, G.context, None, None)
    assert context.shape == (K, SIZE, SIZE, 3) and fps == FPS and "segment 1 " in where  # segment 0 is too short
    assert np.array_equal(context, np.load(store / "segments" / "000001.npy")[:K])
    cfg.data.root = str(tmp_path / "gone")
    with pytest.raises(UsageError, match="pass --context"):
        load_context(None, cfg, info, G.context, None, None)


def test_video_context_starts_at_its_first_frames(tmp_path, make_video):
    frames = np.zeros((6, SIZE, SIZE, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(6)[:, None, None] * 40  # each frame its own red level
    video = make_video("v.mp4", frames, fps=FPS)
    G, cfg, info = load_generator(make_checkpoint(tmp_path / "a.pt"))
    context, fps, where = load_context(str(video), cfg, info, G.context, None, None)
    assert context.shape == (K, SIZE, SIZE, 3) and fps == FPS and "frames 0..1" in where
    assert np.abs(context[:, :, :, 0].mean(axis=(1, 2)) - [0, 40]).max() < 4
    context, _, _ = load_context(str(video), cfg, info, G.context, None, 5)
    assert np.abs(context[:, :, :, 0].mean(axis=(1, 2)) - [120, 160]).max() < 4


@pytest.mark.parametrize("case", ["garbage", "context", "no-store", "port", "segment"])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, case):
    ckpt = make_checkpoint(tmp_path / "a.pt")
    store = write_store(tmp_path / "store")
    argv = {"garbage": ["--checkpoint", str(tmp_path / "junk.pt")],
            "context": ["--checkpoint", str(ckpt), "--context", str(tmp_path / "missing.mp4")],
            "no-store": ["--checkpoint", str(ckpt)],
            "port": ["--checkpoint", str(ckpt), "--port", "70000"],
            "segment": ["--checkpoint", str(ckpt), "--context", str(store), "--segment", "5"]}[case]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main([*argv, "--no-browser"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err and "http" not in out


# ----------------------------------------------------------------------------- the WebSocket channel
def client_frame(payload: bytes, opcode: int = websocket.TEXT) -> bytes:
    """A masked client frame, as a browser sends it."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else
                                     bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536 else
                                     bytes([0x80 | 127]) + n.to_bytes(8, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_open(port: int, origin: str | None = None):
    """(socket, its reader, status line) after a WebSocket handshake with the server."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET /ws HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"] + ([f"Origin: {origin}"] if origin else [])
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    reader = sock.makefile("rb")
    status = reader.readline().decode()
    headers = {}
    while (line := reader.readline().decode().strip()):
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    if status.split()[1] == "101":
        assert headers["sec-websocket-accept"] == websocket.accept_key(key)
    return sock, reader, status


def ws_reply(reader) -> tuple[np.ndarray, dict]:
    b0, b1 = reader.read(2)
    assert b0 == 0x80 | websocket.BINARY and not b1 & 0x80  # one unmasked binary frame
    n = b1 & 0x7F
    n = int.from_bytes(reader.read(2 if n == 126 else 8), "big") if n >= 126 else n
    data = reader.read(n)
    m = struct.unpack("<I", data[:4])[0]
    return np.frombuffer(data[4 + m:], np.uint8).reshape(SIZE, SIZE, 3), json.loads(data[4:4 + m])


def test_websocket_frames_roundtrip():
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3
    for n in (0, 5, 125, 126, 200, 70000):
        payload = os.urandom(n)
        assert websocket.read_message(io.BytesIO(client_frame(payload, websocket.BINARY))) == (websocket.BINARY,
                                                                                                 payload)
        server = websocket.frame(payload)
        assert server[0] == 0x82 and server.endswith(payload) and len(server) - n in (2, 4, 10)
    assert websocket.read_message(io.BytesIO(client_frame(b"abc")[:5])) is None  # cut short: the end
    with pytest.raises(websocket.WebSocketError):
        websocket.read_message(io.BytesIO(websocket.frame(b"unmasked", websocket.TEXT)))


def test_websocket_plays_like_http_and_its_close_stops_the_server(tmp_path, served):
    game = game_for(make_checkpoint(tmp_path / "a.pt"))
    s = served(game, grace=0.3, idle_timeout=0)
    s.restart()
    by_http = [s.step("ArrowLeft")[0], s.step("ArrowRight")[0]]
    port = s.server.server_port
    sock, reader, status = ws_open(port, origin=f"http://127.0.0.1:{port}")
    assert status.split()[1] == "101"
    sock.sendall(client_frame(b"restart\n"))
    frame, head = ws_reply(reader)
    assert np.array_equal(frame, game.context[-1]) and head["frame"] == 0
    replies = []
    for key in ("ArrowLeft", "ArrowRight"):
        sock.sendall(client_frame(f"step\n{key}".encode()))
        replies.append(ws_reply(reader))
    assert [h["action"] for _, h in replies] == ["LEFT", "RIGHT"] and replies[1][1]["frame"] == 2
    assert all(np.array_equal(a, b) for a, (b, _) in zip(by_http, replies))
    sock.sendall(client_frame(b"hi", websocket.PING))
    assert reader.read(4) == bytes([0x80 | websocket.PONG, 2]) + b"hi"
    time.sleep(0.6)
    assert s.thread.is_alive()  # an open game channel is a live page
    sock.sendall(client_frame(b"", websocket.CLOSE))
    sock.close()
    s.thread.join(5)
    assert not s.thread.is_alive() and s.server.stop_reason == "the page was closed"


def test_only_its_own_page_is_answered(tmp_path, served):
    s = served(game_for(make_checkpoint(tmp_path / "a.pt")))
    port = s.server.server_port
    for headers in ({"Host": "evil.example"}, {"Origin": "http://evil.example"}):  # DNS rebinding, CSRF
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/step", body=b"ArrowLeft", headers=headers)
        assert conn.getresponse().status == 403
        conn.close()
    sock, _, status = ws_open(port, origin="http://evil.example")
    assert status.split()[1] == "403"
    sock.close()
    assert s.server.game.steps == 0  # none of them moved the game


# ----------------------------------------------------------------------------- the command line
def start_cli(args, tmp: Path) -> tuple[subprocess.Popen, list[str]]:
    """``python -m framegan.play ... --no-browser`` with TMPDIR=tmp; returns it and its lines up to the URL."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    env.pop("DISPLAY", None)
    # SIGINT back to its default in the child: a shell that runs the suite in the background
    # (`make test &`) makes its children ignore SIGINT, and Python then installs no Ctrl-C handler
    proc = subprocess.Popen([sys.executable, "-m", "framegan.play", *map(str, args), "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("http://"):
            return proc, lines
    proc.wait(10)
    raise AssertionError(f"no URL printed: {lines} {proc.stderr.read()}")


def test_ctrl_c_leaves_nothing_behind(tmp_path):
    ckpt = make_checkpoint(tmp_path / "a.pt")
    store = write_store(tmp_path / "store")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc, lines = start_cli(["--checkpoint", ckpt, "--context", store, "--port", port], tmp)
    try:
        assert f"port {port} is in use" in lines[-2]
        url_port = int(lines[-1].rstrip("/").rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", url_port, timeout=30)
        for path in ("/restart", "/step", "/step"):
            conn.request("POST", path, body=b"ArrowLeft")
            assert len(conn.getresponse().read()) == SIZE * SIZE * 3
        conn.request("GET", "/session.mp4")
        assert conn.getresponse().read()[4:8] == b"ftyp"  # made a temp dir and file on the way
        # conn stays open: an idle keep-alive connection must not hold the server up
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1] == "stopped (Ctrl-C)" and err == ""
    assert list(tmp.iterdir()) == []


# ----------------------------------------------------------------------------- a real browser
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


def chromium_or_skip() -> str:
    """Path of chromium; skips (prints why) where it or playwright is missing, fails under CI."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install playwright)")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        missing.append("chromium (apt-get install chromium)")
    if missing:
        why = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(why + "; CI must run it (.ci/run installs both)")
        warnings.warn(why, stacklevel=2)  # shows in the summary of a plain `pytest -q`
        pytest.skip(why)
    return exe


def test_browser_plays_keys_and_closing_the_page_stops_the_server(tmp_path):
    exe = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    ckpt = make_checkpoint(tmp_path / "a.pt")
    store = write_store(tmp_path / "store")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc, lines = start_cli(["--checkpoint", ckpt, "--context", store, "--fps", "30"], tmp)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 800, "height": 600})
            page.goto(lines[-1] + "?trace=1")
            page.wait_for_function("framegan.ready && framegan.frames > 2", timeout=20000)
            controls = page.inner_text("#controls")
            assert "LEFT" in controls and "\u2190" in controls and "NOOP" in controls

            def play(key):
                """Restart with ``key`` held; the hashes of the first 3 frames drawn after the restart."""
                epoch = page.evaluate("framegan.epoch")
                if key:
                    page.keyboard.down(key)
                page.keyboard.press("r")
                page.wait_for_function(f"framegan.trace.some(t => t.epoch > {epoch} && t.n >= 3)", timeout=20000)
                trace = page.evaluate("framegan.trace")
                if key:
                    page.keyboard.up(key)
                first = min(t["epoch"] for t in trace if t["epoch"] > epoch)
                frames = sorted((t["n"], t["hash"], t["action"]) for t in trace if t["epoch"] == first and t["n"] <= 3)
                assert [n for n, _, _ in frames] == [0, 1, 2, 3]
                return [h for _, h, _ in frames[1:]], {a for _, _, a in frames[1:]}

            left, left_names = play("ArrowLeft")
            right, right_names = play("ArrowRight")
            left2, _ = play("ArrowLeft")
            idle, idle_names = play(None)
            assert left_names == {"LEFT"} and right_names == {"RIGHT"} and idle_names == {"NOOP"}
            assert left == left2  # the same key from the same context draws the same frames
            assert all(a != b for a, b in zip(left, right)) and all(a != b for a, b in zip(left, idle))

            page.wait_for_function("framegan.fps > 0", timeout=5000)
            assert int(page.inner_text("#fps")) > 0
            with page.expect_download(timeout=30000) as download:
                page.click("#save")
            saved = Path(download.value.path())
            assert sum(1 for _ in iter_frames(saved)) >= 16  # 4 restarts x (context frame + 3 steps)

            page.reload()  # /bye, then the page again within the grace period: the server stays
            page.wait_for_function("framegan.ready && framegan.frames > 2", timeout=20000)
            time.sleep(3.5)
            assert proc.poll() is None and page.evaluate("framegan.frames") > 3
            png = page.screenshot()
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            shot = Image.open(io.BytesIO(png))
            shot.verify()
            assert shot.size == (800, 600)
            page.goto("about:blank")  # pagehide -> /bye; nothing reloads within the grace period
            out, err = proc.communicate(timeout=30)
            browser.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1] == "stopped: the page was closed" and err == ""
    assert list(tmp.iterdir()) == []


def test_scripted_session_is_written_with_the_keys_played(tmp_path, capsys):
    from PIL import Image

    ckpt = make_checkpoint(tmp_path / "a.pt")
    store = write_store(tmp_path / "store")
    out = tmp_path / "session.gif"
    assert main(["--checkpoint", str(ckpt), "--context", str(store), "--keys", "LEFT:3,none:2,RIGHT:1",
                 "--out", str(out), "--backend", "torch"]) == 0
    gif = Image.open(out)
    assert gif.n_frames == K + 6 and gif.size == (SIZE * 4, SIZE * 4 + 18)
    assert f"{K + 6} frames" in capsys.readouterr().out
    # the same script plays the same frames; another key plays other frames
    frames = []
    for keys in ("LEFT:3", "LEFT:3", "RIGHT:3"):
        path = tmp_path / f"{keys}-{len(frames)}.gif"
        assert main(["--checkpoint", str(ckpt), "--context", str(store), "--keys", keys, "--out", str(path),
                     "--backend", "torch"]) == 0
        gif = Image.open(path)
        gif.seek(gif.n_frames - 1)
        frames.append(np.asarray(gif.convert("RGB"))[:SIZE * 4])
    assert np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[0], frames[2])
    gif_out, png_out = ["--out", str(tmp_path / "x.gif")], ["--out", str(tmp_path / "x.png")]
    for bad in (["--keys", "JUMP:3", *gif_out], ["--keys", "LEFT", *gif_out], ["--keys", "LEFT:2"],
                ["--keys", "LEFT:2", *png_out]):
        assert main(["--checkpoint", str(ckpt), "--context", str(store), *bad]) == 2
    assert not (tmp_path / "x.gif").exists() and not (tmp_path / "x.png").exists()


def test_game_channel_outlives_the_connection_timeout(tmp_path, served, monkeypatch):
    # A hidden tab sends nothing; the handler's socket timeout (60 s, for idle keep-alive HTTP
    # connections) cut the WebSocket after it and stopped the server ("the page was closed").
    monkeypatch.setattr(play.Handler, "timeout", 0.3)
    s = served(game_for(make_checkpoint(tmp_path / "a.pt")), grace=0.3, idle_timeout=0)
    port = s.server.server_port
    sock, reader, status = ws_open(port, origin=f"http://127.0.0.1:{port}")
    assert status.split()[1] == "101"
    sock.sendall(client_frame(b"restart\n"))
    ws_reply(reader)
    time.sleep(1.0)  # > the timeout, as a hidden tab would
    sock.sendall(client_frame(b"step\nArrowLeft"))
    assert ws_reply(reader)[1]["action"] == "LEFT"
    assert s.thread.is_alive()
    sock.sendall(client_frame(b"", websocket.CLOSE))
    sock.close()


def test_bad_body_lengths_are_answered_not_crashed_on(tmp_path, served):
    s = served(game_for(make_checkpoint(tmp_path / "a.pt")))
    port = s.server.server_port
    for length, code in (("abc", 400), ("-1", 400), (str(10 ** 12), 413)):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall((f"POST /step HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {length}\r\n\r\n").encode())
        assert sock.makefile("rb").readline().split()[1] == str(code).encode(), length
        sock.close()
    s.restart()
    assert s.step("ArrowLeft")[1] == "LEFT"  # still serving


def test_key_script_names_win_over_numbers():
    # A store without key names names its actions "0", "1", ...: "1:2" is the action named "1",
    # not the first control; 1..C stand for latent classes only.
    ids = [play.Control(str(v), (), i) for i, v in enumerate((0, 1, 2, 3))]
    assert [c.name for c in play.parse_script("0:1,1:1,3:1", ids)] == ["0", "1", "3"]
    latent = play.latent_controls(3)
    assert [c.name for c in play.parse_script("1:1,3:2", latent)] == ["latent 1", "latent 3", "latent 3"]
    with pytest.raises(play.UsageError, match="needs a frame count"):
        play.parse_script("0:\u00b2", ids)  # a superscript two is a digit, not a count


def test_game_channel_closes_on_what_the_page_never_sends(tmp_path, served):
    # An unknown command was played as a step; a binary message got no reply (the client waited).
    s = served(game_for(make_checkpoint(tmp_path / "a.pt")), grace=5, idle_timeout=0)
    port = s.server.server_port
    for message in (client_frame(b"bogus\nArrowLeft"), client_frame(b"\x00\x01", websocket.BINARY)):
        sock, reader, status = ws_open(port, origin=f"http://127.0.0.1:{port}")
        assert status.split()[1] == "101"
        sock.sendall(message)
        assert reader.read(4) == bytes([0x80 | websocket.CLOSE, 2]) + (1003).to_bytes(2, "big")
        sock.close()
    assert s.server.game.steps == 0  # nothing was played
