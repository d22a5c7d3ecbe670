"""The configuration reference in README.md, generated from the dataclasses in config.py.

``python -m framegan.config_reference`` prints the Markdown table; ``--write README.md`` replaces
the block between the two markers in the README. A test checks the README is up to date, so the
documentation cannot drift from the code.
"""
from __future__ import annotations

import argparse
import dataclasses
import enum
import inspect
import re
import sys
from pathlib import Path

from framegan import config

BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"
SECTIONS = {"data": config.DataConfig, "model": config.ModelConfig, "loss": config.LossConfig,
            "train": config.TrainConfig, "run": config.RunConfig}


def field_comments(cls) -> dict[str, str]:
    """``name: type = default  # comment`` lines of a dataclass body -> {name: comment}."""
    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def table() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for section, cls in SECTIONS.items():
        comments = field_comments(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if isinstance(default, enum.Enum):
                choices = " \\| ".join(e.value for e in type(default))
                shown, comments[f.name] = f"`{default.value}`", f"{comments.get(f.name, '')} ({choices})"
            else:
                shown = f"`{default}`" if default != "" else "(empty)"
            rows.append(f"| `{section}.{f.name}` | {shown} | {comments.get(f.name, '')} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README has no {BEGIN} ... {END} block")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", metavar="README", help="update the reference block in this file")
    args = ap.parse_args(argv)
    if not args.write:
        print(table())
        return 0
    p = Path(args.write)
    try:
        p.write_text(render(p.read_text()))
    except (OSError, ValueError) as e:
        print(f"error: {p}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
