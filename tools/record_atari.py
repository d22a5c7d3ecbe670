"""Record Atari gameplay to mp4 + actions: ``python tools/record_atari.py [--game MsPacman] [options]``.

A thin wrapper over ``framegan.atari`` (needs the optional ale-py: ``pip install -e ".[atari]"``);
run with ``--help`` for the options.
"""
import sys
from pathlib import Path

if __package__ is None:  # run as a script from a checkout: make the framegan package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from framegan.atari import main

if __name__ == "__main__":
    sys.exit(main())
