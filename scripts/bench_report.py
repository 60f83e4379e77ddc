"""BENCHMARKS.md is shared by several benchmark scripts; each owns one section between markers
and rewrites only that section, so running one benchmark never erases another's numbers."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "BENCHMARKS.md"
HEADER = ("# Benchmarks\n\nEach section is written by the script named in it, on this project's CI-class machine "
          "(2 cores, Intel Xeon with AMX-BF16, no GPU, torch 2.13 CPU) unless it says otherwise. The machine is "
          "shared and noisy: numbers are medians, and each section states its conditions.\n")


def write_section(name: str, body: str, path: Path = DEFAULT) -> None:
    """Replace (or append) the section `name` of the benchmarks file atomically."""
    import sys
    sys.path.insert(0, str(REPO))
    from engine.atomic import write_text

    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else HEADER
    if begin not in text:
        text = text.rstrip() + "\n\n" + block + "\n"
    else:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    write_text(path, text)
