"""Criteo Kaggle click logs for DLRM: the raw text format, its preprocessing, the prepared arrays, a synthetic stand-in.

Raw format (Kaggle "dac" ``train.txt``): one impression per line, 40 tab-separated fields: the click label, 13 integer
features I1..I13 (counts; may be empty or negative) and 26 categorical features C1..C26 (32-bit hashes written as
8 hex digits; may be empty).

Preprocessing follows facebookresearch/dlrm (``data_utils.py``, ``--data-set=kaggle``):

* an empty field reads as ``0`` (label, integer and categorical alike);
* integer features: negative values become 0, then ``log(1 + x)`` (dlrm applies the log when batching; here the
  prepared array stores it already);
* categorical features: the hex value as an integer, optionally hashed to ``value % max_ind_range`` (dlrm's
  ``--max-ind-range``; -1 = no hashing), then replaced by its index among the distinct values of that column in
  order of first appearance in the file (dlrm's dictionaries assign indices the same way); table ``j`` of the
  model has ``counts[j]`` rows;
* days: the file is split into 7 consecutive parts of equal size (``divmod(rows, 7)``, the first ``rows % 7`` parts
  one row longer), days 1-6 train and day 7 test. dlrm's code tests on the first half of day 7 (the second is its
  validation set); ``data.test_rows: dlrm_half`` selects that, ``day7`` (the default, the paper) all of day 7.

Prepared layout (``scripts/prepare_criteo.py`` writes it, :class:`PreparedCriteo` reads it, memory-mapped)::

    <root>/meta.json   {"rows", "day_rows" (7 counts), "counts" (26 table sizes), "max_ind_range", "source", ...}
    <root>/label.npy   int8 (rows,)
    <root>/dense.npy   float32 (rows, 13)  log(1 + max(x, 0))
    <root>/sparse.npy  int32 (rows, 26)    per-column category indices
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

N_DENSE, N_SPARSE, N_DAYS = 13, 26, 7
N_FIELDS = 1 + N_DENSE + N_SPARSE
TEST_ROWS = ("day7", "dlrm_half")
META, LABEL, DENSE, SPARSE = "meta.json", "label.npy", "dense.npy", "sparse.npy"


# -- raw text -> arrays -------------------------------------------------------------------------------------
def day_sizes(rows: int, days: int = N_DAYS) -> list[int]:
    """dlrm's split of ``rows`` consecutive lines into ``days`` parts: equal, the first ``rows % days`` one longer."""
    per_day, extra = divmod(rows, days)
    return [per_day + (1 if d < extra else 0) for d in range(days)]


def dense_transform(raw: np.ndarray) -> np.ndarray:
    """dlrm: negative counts to 0, then ``log(1 + x)``, as float32."""
    return np.log1p(np.maximum(np.asarray(raw, dtype=np.float64), 0.0)).astype(np.float32)


class CategoryIndexer:
    """Per-column dictionaries: hex value (optionally ``% max_ind_range``) -> index in order of first appearance."""

    def __init__(self, max_ind_range: int = -1, n_columns: int = N_SPARSE):
        self.max_ind_range = max_ind_range
        self.maps: list[dict[int, int]] = [{} for _ in range(n_columns)]

    def key(self, hex_value: str) -> int:
        v = int(hex_value, 16)
        return v % self.max_ind_range if self.max_ind_range > 0 else v

    def index_column(self, j: int, values: Sequence[str] | np.ndarray) -> np.ndarray:
        """Indices of one column's values (a chunk of rows), adding unseen values in order of appearance."""
        import pandas as pd

        codes, uniques = pd.factorize(np.asarray(values, dtype=object))  # uniques in order of first appearance
        table = self.maps[j]
        lut = np.empty(len(uniques), dtype=np.int64)
        for u, value in enumerate(uniques):
            lut[u] = table.setdefault(self.key(value), len(table))
        return lut[codes]

    @property
    def counts(self) -> list[int]:
        return [len(m) for m in self.maps]


def _read_chunks(path: Path, chunk_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(labels, raw integer features, categorical hex strings) per chunk of a raw file, empty fields -> 0."""
    import pandas as pd

    with open(path, encoding="utf-8", errors="replace") as f:  # pandas would take extra leading fields as an index
        n_fields = len(f.readline().rstrip("\r\n").split("\t"))
    if n_fields != N_FIELDS:
        raise ValueError(f"{path}: line 1 has {n_fields} tab-separated fields; the Criteo format has {N_FIELDS} "
                         f"(label, 13 integer, 26 categorical)")
    names = ["label", *[f"I{i}" for i in range(1, N_DENSE + 1)], *[f"C{i}" for i in range(1, N_SPARSE + 1)]]
    dtypes = {**{n: "float64" for n in names[:1 + N_DENSE]}, **{n: str for n in names[1 + N_DENSE:]}}
    reader = pd.read_csv(path, sep="\t", header=None, names=names, dtype=dtypes, chunksize=chunk_rows,
                         keep_default_na=False, na_values={n: [""] for n in names[:1 + N_DENSE]},
                         quoting=3, engine="c", index_col=False)  # later bad lines: pandas' ParserError
    for chunk in reader:
        label = chunk["label"].fillna(0).to_numpy()
        raw = chunk[names[1:1 + N_DENSE]].fillna(0).to_numpy()
        # Empty fields (and the trailing fields of a short line, which pandas reads as NaN) are missing: "0".
        cats = chunk[names[1 + N_DENSE:]].fillna("0").replace("", "0").to_numpy(dtype=object)
        yield label.astype(np.int8), raw, cats


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            n += block.count(b"\n")
    with open(path, "rb") as f:  # a last line without a trailing newline still counts
        f.seek(0, 2)
        if f.tell() > 0:
            f.seek(-1, 2)
            n += f.read(1) != b"\n"
    return n


def prepare(input_path: str | Path, out_dir: str | Path, max_ind_range: int = -1, chunk_rows: int = 1_000_000,
            log=print) -> dict[str, Any]:
    """Preprocess a raw Criteo file into ``out_dir`` (layout in the module docstring); returns the metadata."""
    input_path, out_dir = Path(input_path), Path(out_dir)
    rows = count_lines(input_path)
    if rows == 0:
        raise ValueError(f"{input_path} is empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    label = np.lib.format.open_memmap(out_dir / LABEL, mode="w+", dtype=np.int8, shape=(rows,))
    dense = np.lib.format.open_memmap(out_dir / DENSE, mode="w+", dtype=np.float32, shape=(rows, N_DENSE))
    sparse = np.lib.format.open_memmap(out_dir / SPARSE, mode="w+", dtype=np.int32, shape=(rows, N_SPARSE))
    indexer = CategoryIndexer(max_ind_range)
    start = 0
    for y, raw, cats in _read_chunks(input_path, chunk_rows):
        n = len(y)
        label[start:start + n] = y
        dense[start:start + n] = dense_transform(raw)
        for j in range(N_SPARSE):
            sparse[start:start + n, j] = indexer.index_column(j, cats[:, j])
        start += n
        log(f"  {start:,}/{rows:,} rows")
    if start != rows:
        raise ValueError(f"{input_path}: read {start} rows but counted {rows} lines (blank or broken lines?)")
    for a in (label, dense, sparse):
        a.flush()
    meta = {"rows": rows, "day_rows": day_sizes(rows), "counts": indexer.counts, "max_ind_range": max_ind_range,
            "source": str(input_path), "positives": int(np.asarray(label, dtype=np.int64).sum()),
            "format": "adahessian-suite criteo v1"}
    (out_dir / META).write_text(json.dumps(meta, indent=2))
    return meta


# -- prepared arrays -> splits --------------------------------------------------------------------------------
class ClickArrays:
    """Rows of one split: dense (N, 13) float32, sparse (N, 26) int, label (N,) -- arrays or memory maps."""

    def __init__(self, dense: np.ndarray, sparse: np.ndarray, label: np.ndarray, counts: Sequence[int]):
        if not (len(dense) == len(sparse) == len(label)):
            raise ValueError(f"dense/sparse/label lengths differ: {len(dense)}, {len(sparse)}, {len(label)}")
        self.dense, self.sparse, self.label, self.counts = dense, sparse, label, list(counts)

    def __len__(self) -> int:
        return len(self.label)

    def batch(self, rows: np.ndarray | slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if isinstance(rows, np.ndarray):
            rows = np.sort(rows)  # ascending reads from a memory map; order within a batch does not matter
        return (_tensor(self.dense[rows], np.float32), _tensor(self.sparse[rows], np.int64),
                _tensor(self.label[rows], np.float32))


def _tensor(a: np.ndarray, dtype) -> torch.Tensor:
    # A slice of a read-only memory map stays a read-only view; torch would share it and warn that writing to the
    # tensor is undefined. Copy those (a batch); fancy-indexed rows are already a fresh array.
    a = np.ascontiguousarray(a, dtype=dtype)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def missing_message(root: Path) -> str:
    return (f"Criteo Kaggle (prepared) not found: looked for {root / META}, {root / LABEL}, {root / DENSE} and "
            f"{root / SPARSE}. Download the Kaggle Display Advertising Challenge data (dac.tar.gz; needs a Kaggle "
            f"account and accepting the competition's rules), then run `python scripts/prepare_criteo.py "
            f"--input PATH/train.txt --out {root}`; data.source=synthetic runs without it.")


SPOT_CHECK_ROWS = 1_000_000  # rows whose category indices are compared with the table sizes up front (~0.1 s)


def _load_array(path: Path) -> np.ndarray:
    try:  # a memory map: reads the header only; a truncated file fails here
        return np.load(path, mmap_mode="r")
    except Exception as e:  # ValueError (short file, bad header), OSError, UnpicklingError (not a .npy at all)
        raise ValueError(f"{path} is not a readable .npy array ({type(e).__name__}: {e}); prepare the data again "
                         f"with scripts/prepare_criteo.py") from None


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); prepare the data again with scripts/prepare_criteo.py") \
            from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} holds a {type(meta).__name__}, not the prepared data's metadata object")
    for key, ok, want in (("rows", lambda v: isinstance(v, int) and v > 0, "a positive integer"),
                          ("day_rows", lambda v: isinstance(v, list) and len(v) == N_DAYS
                           and all(isinstance(x, int) and x >= 0 for x in v), f"{N_DAYS} row counts"),
                          ("counts", lambda v: isinstance(v, list) and len(v) == N_SPARSE
                           and all(isinstance(x, int) and x >= 1 for x in v), f"{N_SPARSE} positive table sizes")):
        value = meta.get(key)
        if not ok(value):
            shown = f"{len(value)} values" if isinstance(value, list) else repr(value)
            raise ValueError(f"{path}: {key!r} is {shown}; the Criteo layout needs {want}")
    if sum(meta["day_rows"]) != meta["rows"]:
        raise ValueError(f"{path}: 'day_rows' add up to {sum(meta['day_rows'])} but 'rows' is {meta['rows']}")
    return meta


def open_prepared(root: str | Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """(meta, label, dense, sparse) of a prepared directory, memory-mapped and checked against each other: the
    files present, meta.json complete, every array of the shape and type meta.json and the format say, and the
    category indices of the first :data:`SPOT_CHECK_ROWS` rows inside their tables (all rows would mean reading
    4.8 GB on Kaggle; an index past its table in a later row fails in the embedding lookup). FileNotFoundError /
    ValueError naming the file."""
    root = Path(root)
    if not all((root / name).is_file() for name in (META, LABEL, DENSE, SPARSE)):
        raise FileNotFoundError(missing_message(root))
    meta = _read_meta(root / META)
    rows = meta["rows"]
    arrays = {}
    for name, shape, kinds in ((LABEL, (rows,), "iu"), (DENSE, (rows, N_DENSE), "f"),
                               (SPARSE, (rows, N_SPARSE), "iu")):
        a = arrays[name] = _load_array(root / name)
        if a.shape != shape or a.dtype.kind not in kinds:
            raise ValueError(f"{root / name} is {a.dtype} {a.shape}; {root / META} and the format say "
                             f"{'integer' if 'i' in kinds else 'float'} {shape}; prepare the data again")
    head = np.asarray(arrays[SPARSE][:SPOT_CHECK_ROWS])
    if len(head):
        over = np.flatnonzero(head.max(axis=0) >= np.asarray(meta["counts"]))
        low = np.flatnonzero(head.min(axis=0) < 0)
        if len(over) or len(low):
            j = int(over[0] if len(over) else low[0])
            raise ValueError(f"{root / SPARSE}: column C{j + 1} holds indices {int(head[:, j].min())}.."
                             f"{int(head[:, j].max())} but {root / META} gives table {j + 1} {meta['counts'][j]} "
                             f"rows; the two come from different preparations: prepare the data again")
    return meta, arrays[LABEL], arrays[DENSE], arrays[SPARSE]


def load_prepared(root: str | Path, test_rows: str = "day7") -> tuple[ClickArrays, ClickArrays, dict[str, Any]]:
    """(train = days 1-6, test = day 7 or its first half, metadata) of a prepared directory, memory-mapped."""
    if test_rows not in TEST_ROWS:
        raise ValueError(f"data.test_rows={test_rows!r} is not allowed; choose one of {', '.join(TEST_ROWS)}")
    meta, label, dense, sparse = open_prepared(root)
    n_train = sum(meta["day_rows"][:-1])
    n_test = meta["day_rows"][-1]
    if test_rows == "dlrm_half":
        n_test = math.ceil(n_test / 2)  # dlrm: np.array_split(day 7, 2)[0]
    train = ClickArrays(dense[:n_train], sparse[:n_train], label[:n_train], meta["counts"])
    test = ClickArrays(dense[n_train:n_train + n_test], sparse[n_train:n_train + n_test],
                       label[n_train:n_train + n_test], meta["counts"])
    return train, test, meta


# -- batches --------------------------------------------------------------------------------------------------
class ClickBatches:
    """Training batches over ``arrays``, one shuffled pass split into ``segments`` trainer epochs.

    A pass is a permutation of all rows drawn from ``(seed, pass number)``; trainer epoch ``e`` is segment
    ``e % segments`` of pass ``e // segments`` (set by :meth:`set_epoch`, the task's ``on_epoch_start``), so a long
    pass (300k iterations on Kaggle) is evaluated and checkpointed ``segments`` times and a resumed run replays it.
    """

    def __init__(self, arrays: ClickArrays, batch_size: int, segments: int = 1, seed: int = 0, shuffle: bool = True):
        if batch_size < 1 or segments < 1:
            raise ValueError(f"batch_size and segments must be >= 1, got {batch_size}, {segments}")
        self.arrays, self.batch_size, self.segments = arrays, batch_size, segments
        self.seed, self.shuffle = seed, shuffle
        n_batches = math.ceil(len(arrays) / batch_size)
        if n_batches < segments:
            raise ValueError(f"{len(arrays)} training rows make {n_batches} batches of {batch_size}, fewer than "
                             f"segments={segments}")
        self.bounds = np.linspace(0, n_batches, segments + 1).round().astype(int)  # batch index bounds per segment
        self.epoch = 0
        self._perm: tuple[int, np.ndarray] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _permutation(self, pass_no: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != pass_no:
            rng = np.random.default_rng([self.seed, pass_no])
            self._perm = (pass_no, rng.permutation(len(self.arrays)))
        return self._perm[1]

    def __len__(self) -> int:
        s = self.epoch % self.segments
        return int(self.bounds[s + 1] - self.bounds[s])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        s, pass_no = self.epoch % self.segments, self.epoch // self.segments
        perm = self._permutation(pass_no) if self.shuffle else None
        for b in range(self.bounds[s], self.bounds[s + 1]):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, len(self.arrays))
            yield self.arrays.batch(perm[lo:hi] if perm is not None else slice(lo, hi))


class EvalBatches:
    """Evaluation batches in file order."""

    def __init__(self, arrays: ClickArrays, batch_size: int):
        self.arrays, self.batch_size = arrays, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.arrays) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for lo in range(0, len(self.arrays), self.batch_size):
            yield self.arrays.batch(slice(lo, min(lo + self.batch_size, len(self.arrays))))


# -- synthetic stand-in ---------------------------------------------------------------------------------------
class PlantedClicks:
    """A planted click model with Criteo's shapes: 13 count features, 26 categorical features, a binary label.

    Counts are log-normal integers (some missing, read as 0, as in Criteo); categories follow a Zipf-like law over
    each column's ``cardinalities[j]`` values. The click probability is ``sigmoid(bias + w . z + sum_j e_j[c_j])`` with
    ``z`` the standardized ``log(1 + count)``, ``w`` drawn once and per-category effects ``e_j`` drawn once for the
    first ``informative`` columns (the others are noise, as many Criteo columns are nearly). :meth:`bayes_accuracy`
    is the accuracy of the true probabilities: a learnt model approaches it from the majority-class rate.
    """

    def __init__(self, cardinalities: Sequence[int], informative: int = 13, effect_scale: float = 1.0,
                 dense_scale: float = 0.5, bias: float = -1.5, missing_rate: float = 0.2, zipf: float = 1.2,
                 seed: int = 0):
        if len(cardinalities) != N_SPARSE or min(cardinalities) < 1:
            raise ValueError(f"synthetic cardinalities must be {N_SPARSE} positive sizes, got {list(cardinalities)}")
        rng = np.random.default_rng(seed)
        self.cardinalities = [int(c) for c in cardinalities]
        self.missing_rate, self.zipf, self.bias = missing_rate, zipf, bias
        self.log_mu = rng.uniform(0.5, 4.0, N_DENSE)  # counts spread like Criteo's (small to thousands)
        self.log_sigma = rng.uniform(0.5, 1.5, N_DENSE)
        self.w = rng.normal(0.0, dense_scale, N_DENSE)
        self.effects = [rng.normal(0.0, effect_scale if j < informative else 0.0, c)
                        for j, c in enumerate(self.cardinalities)]

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(raw counts (n, 13) int64 with missing as 0, sparse (n, 26) int64, labels (n,) int8, p_click (n,))."""
        rng = np.random.default_rng(seed)
        raw = np.floor(np.exp(rng.normal(self.log_mu, self.log_sigma, (n, N_DENSE)))).astype(np.int64) - 1
        raw[rng.random((n, N_DENSE)) < self.missing_rate] = 0
        z = (dense_transform(raw) - self.log_mu) / self.log_sigma
        sparse = np.empty((n, N_SPARSE), dtype=np.int64)
        logit = self.bias + z @ self.w
        for j, c in enumerate(self.cardinalities):
            p = 1.0 / np.arange(1, c + 1) ** self.zipf
            sparse[:, j] = rng.choice(c, size=n, p=p / p.sum())
            logit = logit + self.effects[j][sparse[:, j]]
        p_click = 1.0 / (1.0 + np.exp(-logit))
        label = (rng.random(n) < p_click).astype(np.int8)
        return raw, sparse, label, p_click

    @staticmethod
    def bayes_accuracy(p_click: np.ndarray) -> float:
        return float(np.maximum(p_click, 1 - p_click).mean())


def synthetic_splits(s) -> tuple[ClickArrays, ClickArrays, dict[str, Any]]:
    """Train and test rows of one planted model (``data.synthetic``), and a description."""
    model = PlantedClicks(list(s.cardinalities), s.informative, s.effect_scale, s.dense_scale, s.bias,
                          s.missing_rate, s.zipf, seed=s.seed)
    splits = []
    info: dict[str, Any] = {"source": "synthetic", "counts": model.cardinalities}
    for name, n, seed in (("train", s.train_rows, s.seed * 1000 + 1), ("test", s.test_rows, s.seed * 1000 + 2)):
        raw, sparse, label, p = model.sample(n, seed)
        splits.append(ClickArrays(dense_transform(raw), sparse, label, model.cardinalities))
        info[f"{name}_ctr"] = float(label.mean())
        info[f"{name}_bayes_acc"] = 100.0 * model.bayes_accuracy(p)
    return splits[0], splits[1], info
