"""Command-line helpers shared by scripts/sweep.py and scripts/speed.py."""

from __future__ import annotations


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``[own args] -- [run.py overrides]`` into the two lists (no ``--``: no overrides)."""
    if "--" not in argv:
        return argv, []
    i = argv.index("--")
    return argv[:i], argv[i + 1:]
