"""The command line shared by the text-corpus preparation scripts (prepare_ptb.py, prepare_wikitext103.py):
download into ``--root``, or copy ``--from`` a folder, or only ``--check`` what is there."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

DATA_DIR = Path(os.environ.get("ADAHESSIAN_DATA", "data"))


def corpus_main(argv: list[str] | None, *, doc: str | None, folder: str, task: str,
                download: Callable[[Path], None], copy_from: Callable[[Path, Path], None],
                check: Callable[[Path], bool]) -> int:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=DATA_DIR / folder,
                   help=f"target directory (default: $ADAHESSIAN_DATA/{folder} or data/{folder})")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--from", dest="src", type=Path, help="copy the three files from this directory")
    src.add_argument("--check", action="store_true", help="only check the files in --root")
    a = p.parse_args(argv)
    if a.src is not None:
        if a.src.resolve() != a.root.resolve():
            copy_from(a.src, a.root)
    elif not a.check:
        download(a.root)
    print(f"{a.root}:")
    check(a.root)
    print(f"train with: python run.py task={task} optim=adahessian data.root={a.root}")
    return 0
