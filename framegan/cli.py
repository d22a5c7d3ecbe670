"""What every command line of framegan shares: one-line errors, exit code 2, devices, threads.

Each entry point has ``main(argv=None) -> int``: it parses with ``Parser`` and runs its work
under ``run_main``, so bad input ends as ``error: <one line>`` on stderr and exit code 2 (never a
traceback or a usage dump), Ctrl-C as exit code 130 and ``kill`` (SIGTERM) as 143, both after
the same clean-up (temp files and half-built stores removed).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable


class UsageError(ValueError):
    """Bad command-line input; reported as ``error: <message>`` (one line), exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors raise ``UsageError`` (one line, no usage dump) instead of exiting."""

    def error(self, message):
        raise UsageError(f"{message} (see --help)")


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive, default=None,
                        help="CPU threads for torch (and OpenCV) (default: $OMP_NUM_THREADS if set, "
                             "else every CPU this process may use; use 1 on a busy machine)")


def add_precision(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--precision auto|fp32|bf16`` (``framegan.precision.autocast_dtype`` reads it)."""
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help=help)


# Default: every CPU this process may use. benchmarks/threads_speed.py on the idle 2-core Xeon
# (AVX-512 + AMX) this was built on, 1 vs 2 threads interleaved, best of 5: a default train step
# 0.59 vs 0.36 s (1.63x), batch-1 rollout 244 vs 274 frames/s (1.12x). A user's machine is
# usually idle. On a machine where other jobs keep the cores busy two threads wait on each other
# at every op (the same script under load 4-7: train step 0.99 vs 2.2 s, rollout 152 vs 19
# frames/s): pass --threads 1 there (the torchrun tests run 1 thread per rank).
def set_threads(n: int | None, opencv: bool = False) -> int:
    """Intra-op threads for torch (and OpenCV's pool if ``opencv``); ``None``: $OMP_NUM_THREADS,
    else every CPU this process may use. A command that has not imported torch (extract) does not
    pay for importing it here."""
    if n is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        n = int(env) if env.isdigit() and int(env) > 0 else cpus
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)  # read when torch starts its thread pool
    if opencv:
        import cv2
        cv2.setNumThreads(n)
    return n


def resolve_device(name: str, label: str | None = None, local_rank: int | None = None):
    """``auto | cpu | cuda[:N]`` (or any torch device) -> a ``torch.device`` that exists here. Under
    torchrun (``local_rank`` given) CUDA means this process's own GPU, whatever N says."""
    import torch

    label = label or f"--device {name}"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"{label}: not a device (use auto, cpu or cuda[:N])") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{label}: CUDA is not available here")
        index = local_rank if local_rank is not None else device.index or 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"{label}: there are {torch.cuda.device_count()} CUDA devices")
        return torch.device("cuda", index)
    return device


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that every ``with`` and ``finally``
    cleans up (by default Python dies at once and leaves half-built output behind)."""


def _terminate(signum, frame):
    raise Terminated


@contextlib.contextmanager
def _sigterm_unwinds():
    # Only in a plain process's main thread: under torchrun (WORLD_SIZE > 1) the launcher's
    # SIGTERM to every rank must not start unwinding through collective calls.
    if threading.current_thread() is not threading.main_thread() or \
            int(os.environ.get("WORLD_SIZE", "1")) > 1:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def os_error(e: OSError) -> str:
    """One line for a missing or unwritable path, a full disk: ``<path>: <what is wrong>`` (the
    path alone tells the user which of their arguments it is)."""
    where = f"{e.filename}: " if e.filename else ""
    return f"{where}{e.strerror or e}"


def run_main(work: Callable[[], object], errors: tuple[type[BaseException], ...] = (),
             interrupted: str = "interrupted; nothing written") -> int:
    """Run ``work``; ``UsageError``, ``errors`` and ``OSError`` (a missing or unwritable path, a
    full disk) become ``error: <message>`` and exit code 2, Ctrl-C prints ``interrupted``, 130
    (SIGTERM the same, 143). ``--help`` returns 0 instead of raising ``SystemExit``. An error
    with ``reported = True`` was already printed where it was raised (a torchrun rank before its
    closing barrier)."""
    try:
        with _sigterm_unwinds():
            work()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0
    except (UsageError, *errors) as e:
        if not getattr(e, "reported", False):  # True: already printed where it was raised
            print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(interrupted, file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    return 0
