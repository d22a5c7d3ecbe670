"""Record ViZDoom gameplay to mp4 + sidecars: ``python tools/record_vizdoom.py [--scenario deathmatch] [options]``.

A thin wrapper over ``framegan.vizdoom`` (needs the optional vizdoom: ``pip install -e ".[vizdoom]"``);
run with ``--help`` for the options.
"""
import sys
from pathlib import Path

if __package__ is None:  # run as a script from a checkout: make the framegan package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from framegan.vizdoom import main

if __name__ == "__main__":
    sys.exit(main())
