"""Checks of a fairseq data-bin directory (``fairseq-preprocess`` output) before a run, without importing fairseq.

A directory for ``src -> tgt`` holds ``dict.<src>.txt``, ``dict.<tgt>.txt`` and, per split (train, valid, the
generation subset) and language, ``<split>.<src>-<tgt>.<lang>.bin`` (the token ids, back to back) and ``.idx``,
fairseq's ``MMapIndexedDataset`` index (fairseq/data/indexed_dataset.py)::

    9 bytes magic b"MMIDIDX\\x00\\x00" | uint64 version = 1 | uint8 dtype code | uint64 n (sentences)
    int32 sizes[n] (tokens per sentence) | int64 pointers[n] (byte offset of each sentence in the .bin)

A ``.bin`` cut short (a copy interrupted, a full disk) is not noticed by fairseq until a batch reads past its end,
deep into training; here its length is compared with what the index says: ``pointers[-1] + sizes[-1] * itemsize``.
Reading the index touches 12 bytes per sentence (54 MB for WMT14's 4.5M pairs), never the ``.bin``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
HEADER = len(MAGIC) + 8 + 1 + 8
# fairseq's _code_to_dtype
DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.double,
          8: np.uint16, 9: np.uint32, 10: np.uint64}


def read_index(path: str | Path) -> tuple[np.dtype, np.ndarray, np.ndarray]:
    """(token dtype, sizes, pointers) of a ``.idx`` file; ValueError naming the file when it is not one."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[: len(MAGIC)] != MAGIC or len(raw) < HEADER:
        raise ValueError(f"{path} is not a fairseq mmap index (no MMIDIDX header); binarize the data again with "
                         f"fairseq-preprocess (--dataset-impl mmap, its default)")
    (version,), (code,), (n,) = (struct.unpack_from("<Q", raw, 9), struct.unpack_from("<B", raw, 17),
                                 struct.unpack_from("<Q", raw, 18))
    if version != 1 or code not in DTYPES:
        raise ValueError(f"{path}: index version {version}, dtype code {code}; fairseq writes version 1 with a "
                         f"code in {sorted(DTYPES)}")
    if len(raw) < HEADER + 12 * n:
        raise ValueError(f"{path} is truncated: {len(raw)} bytes, its header announces {n} sentences "
                         f"({HEADER + 12 * n} bytes)")
    sizes = np.frombuffer(raw, dtype=np.int32, count=n, offset=HEADER)
    pointers = np.frombuffer(raw, dtype=np.int64, count=n, offset=HEADER + 4 * n)
    return np.dtype(DTYPES[code]), sizes, pointers


def check_split(prefix: str | Path) -> int:
    """``<prefix>.idx`` and ``<prefix>.bin`` present and of matching lengths; the number of sentences."""
    idx, binf = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
    dtype, sizes, pointers = read_index(idx)
    expected = int(pointers[-1]) + int(sizes[-1]) * dtype.itemsize if len(sizes) else 0
    actual = binf.stat().st_size
    if actual != expected:
        raise ValueError(f"{binf} holds {actual} bytes but {idx.name} indexes {len(sizes)} sentences ending at byte "
                         f"{expected} ({'truncated' if actual < expected else 'extra bytes'}); binarize the data "
                         f"again")
    return len(sizes)


def check_data_bin(root: str | Path, src: str, tgt: str, subsets: tuple[str, ...] = ("train", "valid", "test"),
                   how_to_get: str = "") -> None:
    """The dictionaries and every subset's ``.idx``/``.bin`` pair for both languages, consistent within each pair
    and between the languages (a pair of files per sentence pair). FileNotFoundError / ValueError, one line."""
    root = Path(root)
    names = [f"dict.{src}.txt", f"dict.{tgt}.txt"]
    names += [f"{s}.{src}-{tgt}.{lang}.{ext}" for s in dict.fromkeys(subsets) for lang in (src, tgt)
              for ext in ("idx", "bin")]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise FileNotFoundError(f"data.root={root} has no complete binarized {src}-{tgt} data (missing: {shown}). "
                                f"{how_to_get}".rstrip())
    for name in names[:2]:
        if (root / name).stat().st_size == 0:
            raise ValueError(f"{root / name} is empty; binarize the data again")
    for s in dict.fromkeys(subsets):
        n_src = check_split(root / f"{s}.{src}-{tgt}.{src}")
        n_tgt = check_split(root / f"{s}.{src}-{tgt}.{tgt}")
        if n_src != n_tgt:
            raise ValueError(f"{root}: the {s} split has {n_src} {src} sentences but {n_tgt} {tgt} sentences; "
                             f"binarize the data again")
