"""Extract videos into a frame store: ``python tools/extract_frames.py VIDEO [VIDEO ...] [options]``.

A thin wrapper over ``framegan.extract`` (also installed as ``framegan-extract``); run with
``--help`` for the options.
"""
import sys
from pathlib import Path

if __package__ is None:  # run as a script from a checkout: make the framegan package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from framegan.extract import main

if __name__ == "__main__":
    sys.exit(main())
