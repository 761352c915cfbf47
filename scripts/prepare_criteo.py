"""Preprocess the Criteo Kaggle click logs into the arrays ``task=criteo_dlrm`` reads (``data.root``).

    python scripts/prepare_criteo.py --input PATH/train.txt [--out data/criteo_kaggle] [--max-ind-range N]

The data: Criteo's Display Advertising Challenge release (``dac.tar.gz``, whose ``train.txt`` holds 45,840,617
labelled rows). It is distributed through Kaggle ("Display Advertising Challenge" competition data, or Criteo's
own download page): you need a Kaggle account and to accept the competition's rules, so this script does not
download anything. Extract ``train.txt`` and point ``--input`` at it.

What it writes (tasks/recommendation/data.py has the details): ``label.npy`` (int8), ``dense.npy`` (float32,
``log(1 + max(x, 0))``), ``sparse.npy`` (int32 per-column category indices, dlrm's dictionaries), ``meta.json``
(rows, the 7 day sizes, the 26 table sizes). About 7.2 GB for the full file (157 bytes a row), written in one
pass over it.
``--max-ind-range N`` hashes each categorical value to ``value % N`` first (dlrm's ``--max-ind-range``): tables of at
most N rows instead of up to ~10M (the default, -1, keeps every distinct value, ~34M embedding rows in all).

Try it on a small real sample first: ``head -n 10000 train.txt > head.txt``, then
``--input head.txt --out /tmp/criteo``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tasks.recommendation.data import prepare  # noqa: E402

DATA_DIR = Path(os.environ.get("ADAHESSIAN_DATA", "data"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", type=Path, required=True, help="the raw tab-separated file (Kaggle dac train.txt)")
    p.add_argument("--out", type=Path, default=DATA_DIR / "criteo_kaggle",
                   help="output directory (default: $ADAHESSIAN_DATA/criteo_kaggle or data/criteo_kaggle)")
    p.add_argument("--max-ind-range", type=int, default=-1,
                   help="hash categorical values modulo this before indexing (dlrm's option; -1: no hashing)")
    p.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows parsed at a time (memory vs speed)")
    a = p.parse_args(argv)
    if not a.input.is_file():
        print(f"error: {a.input} not found. Download the Criteo Display Advertising Challenge data (dac.tar.gz) "
              f"from Kaggle (account and competition rules required) and extract train.txt.", file=sys.stderr)
        return 2
    if a.max_ind_range == 0 or a.max_ind_range < -1:
        print(f"error: --max-ind-range must be -1 (no hashing) or positive, got {a.max_ind_range}", file=sys.stderr)
        return 2
    t0 = time.time()
    print(f"preprocessing {a.input} -> {a.out}")
    meta = prepare(a.input, a.out, max_ind_range=a.max_ind_range, chunk_rows=a.chunk_rows)
    print(f"done in {time.time() - t0:.0f} s: {meta['rows']:,} rows, click rate {meta['positives'] / meta['rows']:.4f}")
    print(f"days (rows): {meta['day_rows']}")
    print(f"table sizes: {meta['counts']} ({sum(meta['counts']):,} embedding rows)")
    print(f"train with: python run.py task=criteo_dlrm optim=adahessian data.root={a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
