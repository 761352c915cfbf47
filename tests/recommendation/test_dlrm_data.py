"""Criteo preprocessing (dlrm's rules) on small files in the real tab-separated format, splits and batching."""

import json
import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from tasks.recommendation import check_data
from tasks.recommendation.data import (
    ClickArrays,
    ClickBatches,
    EvalBatches,
    PlantedClicks,
    day_sizes,
    load_prepared,
    prepare,
)


def row(label, ints, cats):
    """One raw line: label, 13 integer fields, 26 categorical fields ('' = missing), tab-separated."""
    assert len(ints) == 13 and len(cats) == 26
    return "\t".join([str(label), *map(str, ints), *cats]) + "\n"


def cats(first, second="", rest="0a0b0c0d"):
    return [first, second, *[rest] * 24]


# Ten lines: empty fields, negative counts, repeated and new category values.
INTS = [[1, 0, 5, -1, 3, "", 10, 2, 0, 1, 1, 0, 7]] + [[i, "", 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] for i in range(9)]
CATS = [cats("68fd1e64", "80e26c9b"),  # first appearance of both
        cats("05db9164", ""),          # missing second: read as "0"
        cats("68fd1e64", "80e26c9b"),  # repeats
        cats("", "0b153874"),          # missing first
        cats("05db9164", "00000000"),  # "00000000" is the value 0, the same as a missing field (dlrm)
        cats("8cf07265", "0b153874"),
        cats("68fd1e64", ""), cats("68fd1e64", ""), cats("ae82ea21", ""), cats("05db9164", "80e26c9b")]
LABELS = [0, 1, 0, 0, 1, 0, 0, 1, 1, 0]


def write_tsv(path, n=10):
    path.write_text("".join(row(LABELS[i], INTS[i], CATS[i]) for i in range(n)))
    return path


def test_day_sizes_follow_dlrm_and_give_300k_iterations_on_kaggle():
    assert day_sizes(10) == [2, 2, 2, 1, 1, 1, 1]
    kaggle = day_sizes(45_840_617)
    assert kaggle == [6_548_660] * 4 + [6_548_659] * 3
    assert math.ceil(sum(kaggle[:6]) / 128) == 306_969  # batches of 128 in one pass over days 1-6


def test_prepare_applies_dlrm_transforms_and_first_appearance_indices(tmp_path):
    meta = prepare(write_tsv(tmp_path / "train.txt"), tmp_path / "out", log=lambda *_: None)
    label = np.load(tmp_path / "out/label.npy")
    dense = np.load(tmp_path / "out/dense.npy")
    sparse = np.load(tmp_path / "out/sparse.npy")
    assert label.tolist() == LABELS and label.dtype == np.int8
    # log(1 + max(x, 0)); empty -> 0, negative -> 0
    expected0 = np.log1p(np.array([1, 0, 5, 0, 3, 0, 10, 2, 0, 1, 1, 0, 7], dtype=np.float64)).astype(np.float32)
    np.testing.assert_array_equal(dense[0], expected0)
    assert dense[1, 0] == 0.0 and dense[1, 1] == 0.0 and dense[2, 0] == np.float32(np.log(2.0))
    assert dense.dtype == np.float32 and dense.shape == (10, 13)
    # column 0: 68fd1e64 -> 0, 05db9164 -> 1, missing ("0") -> 2, 8cf07265 -> 3, ae82ea21 -> 4
    assert sparse[:, 0].tolist() == [0, 1, 0, 2, 1, 3, 0, 0, 4, 1]
    # column 1: 80e26c9b -> 0, missing -> 1, 0b153874 -> 2; "00000000" is the value 0 = missing -> 1
    assert sparse[:, 1].tolist() == [0, 1, 0, 2, 1, 2, 1, 1, 1, 0]
    assert (sparse[:, 2:] == 0).all() and sparse.dtype == np.int32
    assert meta["counts"][:3] == [5, 3, 1] and len(meta["counts"]) == 26
    assert meta["rows"] == 10 and meta["day_rows"] == [2, 2, 2, 1, 1, 1, 1] and meta["positives"] == 4
    assert json.loads((tmp_path / "out/meta.json").read_text()) == meta


def test_prepare_reads_in_chunks_with_the_same_result(tmp_path):
    src = write_tsv(tmp_path / "train.txt")
    prepare(src, tmp_path / "a", log=lambda *_: None)
    prepare(src, tmp_path / "b", chunk_rows=3, log=lambda *_: None)  # indices must continue across chunks
    for name in ("label.npy", "dense.npy", "sparse.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "a" / name), np.load(tmp_path / "b" / name))


def test_max_ind_range_hashes_values_before_indexing(tmp_path):
    # modulo 39, 8cf07265 collides with 68fd1e64; 05db9164, ae82ea21 and missing (0) stay apart
    assert (0x68FD1E64 % 39, 0x05DB9164 % 39, 0x8CF07265 % 39, 0xAE82EA21 % 39) == (37, 13, 37, 25)
    meta = prepare(write_tsv(tmp_path / "train.txt"), tmp_path / "out", max_ind_range=39, log=lambda *_: None)
    sparse = np.load(tmp_path / "out/sparse.npy")
    # keys in order of appearance: 37 -> 0, 13 -> 1, 0 -> 2, 37 again (8cf07265) -> 0, 25 -> 3
    assert sparse[:, 0].tolist() == [0, 1, 0, 2, 1, 0, 0, 0, 3, 1]
    assert meta["counts"][0] == 4 and meta["max_ind_range"] == 39


@pytest.mark.parametrize("where", [0, 5])
def test_a_line_with_too_many_fields_is_an_error(tmp_path, where):
    lines = write_tsv(tmp_path / "train.txt").read_text().splitlines(keepends=True)
    lines[where] = lines[where].replace("\n", "\t0\n")  # 41 fields
    (tmp_path / "bad.txt").write_text("".join(lines))
    with pytest.raises(ValueError, match="41"):
        prepare(tmp_path / "bad.txt", tmp_path / "out", log=lambda *_: None)


def test_splits_are_days_1_to_6_and_day_7_or_its_first_half(tmp_path):
    prepare(write_tsv(tmp_path / "train.txt"), tmp_path / "out", log=lambda *_: None)
    train, test, meta = load_prepared(tmp_path / "out")
    assert len(train) == 9 and len(test) == 1 and test.label.tolist() == [LABELS[9]]
    assert train.counts == meta["counts"]
    write_tsv(tmp_path / "big.txt", n=10)
    # 17 rows: days [3, 3, 3, 2, 2, 2, 2]; day 7 = rows 15-16, its first half (dlrm: ceil) = row 15
    lines = (tmp_path / "big.txt").read_text().splitlines(keepends=True)
    (tmp_path / "big.txt").write_text("".join(lines + lines[:7]))
    prepare(tmp_path / "big.txt", tmp_path / "big", log=lambda *_: None)
    train, test, _ = load_prepared(tmp_path / "big")
    assert (len(train), len(test)) == (15, 2)
    _, half, _ = load_prepared(tmp_path / "big", test_rows="dlrm_half")
    assert len(half) == 1 and half.label.tolist() == [LABELS[5]]
    with pytest.raises(ValueError, match="test_rows='week'"):
        load_prepared(tmp_path / "big", test_rows="week")


def test_missing_prepared_data_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_prepared(tmp_path / "nowhere")
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "meta.json") in msg and "sparse.npy" in msg
    assert "Kaggle account" in msg and "scripts/prepare_criteo.py" in msg and "data.source=synthetic" in msg


def criteo_cfg(root, source="real"):
    return OmegaConf.create({"data": {"source": source, "root": str(root), "test_rows": "day7"}})


@pytest.fixture
def prepared(tmp_path):
    prepare(write_tsv(tmp_path / "train.txt"), tmp_path / "out", log=lambda *_: None)
    return tmp_path / "out"


def edit_meta(root, **changes):
    meta = json.loads((root / "meta.json").read_text())
    (root / "meta.json").write_text(json.dumps({**meta, **changes}))


def both_raise(root, match):
    for call in (lambda: check_data(criteo_cfg(root)), lambda: load_prepared(root)):
        with pytest.raises(ValueError, match=match):
            call()


def test_meta_with_25_table_sizes_is_refused_not_trained_on_25_tables(prepared):
    check_data(criteo_cfg(prepared))
    counts = json.loads((prepared / "meta.json").read_text())["counts"]
    edit_meta(prepared, counts=counts[:25])
    both_raise(prepared, r"meta.json: 'counts' is 25 values; the Criteo layout needs 26 positive table sizes")


def test_sparse_array_with_25_columns_is_refused(prepared):
    np.save(prepared / "sparse.npy", np.load(prepared / "sparse.npy")[:, :25])
    both_raise(prepared, r"sparse.npy is int32 \(10, 25\); .*meta.json and the format say integer \(10, 26\)")


def test_rows_of_meta_and_arrays_must_agree(prepared):
    np.save(prepared / "label.npy", np.load(prepared / "label.npy")[:9])
    both_raise(prepared, r"label.npy is int8 \(9,\); .* say integer \(10,\)")


def test_table_sizes_smaller_than_the_indices_are_refused(prepared):
    counts = json.loads((prepared / "meta.json").read_text())["counts"]
    assert counts[0] == 5  # indices 0..4 in column C1
    edit_meta(prepared, counts=[4, *counts[1:]])
    both_raise(prepared, r"sparse.npy: column C1 holds indices 0..4 but .*meta.json gives table 1 4 rows")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_truncated_or_garbage_array_is_named(prepared, damage):
    path = prepared / "dense.npy"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 40] if damage == "truncate" else b"\x00garbage" * 20)
    both_raise(prepared, "dense.npy is not a readable .npy array")


def test_broken_meta_json_is_named(prepared):
    (prepared / "meta.json").write_text('{"rows": 10, "day_rows": [2, 2')
    both_raise(prepared, "meta.json is not valid JSON")
    edit_meta_text = {"rows": 10, "day_rows": [2, 2, 2, 1, 1, 1, 2], "counts": [1] * 26}
    (prepared / "meta.json").write_text(json.dumps(edit_meta_text))
    both_raise(prepared, "'day_rows' add up to 11 but 'rows' is 10")


def test_check_data_reports_missing_data_and_skips_synthetic(tmp_path):
    with pytest.raises(FileNotFoundError, match="Kaggle"):
        check_data(criteo_cfg(tmp_path))
    check_data(criteo_cfg(tmp_path, source="synthetic"))


def arrays(n):
    return ClickArrays(np.arange(n * 13, dtype=np.float32).reshape(n, 13), np.arange(n * 26).reshape(n, 26) % 5,
                       (np.arange(n) % 2).astype(np.int8), [5] * 26)


def test_segments_cover_each_pass_exactly_once_and_passes_reshuffle():
    data = arrays(103)
    batches = ClickBatches(data, batch_size=10, segments=3, seed=1)  # 11 batches -> segments of 4, 3, 4 (rounded)

    def rows_of(epoch):
        batches.set_epoch(epoch)
        out = [b[0][:, 0].numpy() / 13 for b in batches]
        assert len(out) == len(batches)
        return np.concatenate(out).astype(int)

    first_pass = [rows_of(e) for e in range(3)]
    assert [len(r) for r in first_pass] == [40, 30, 33]
    assert sorted(np.concatenate(first_pass).tolist()) == list(range(103))  # every row once per pass
    second_pass = np.concatenate([rows_of(e) for e in range(3, 6)])
    assert sorted(second_pass.tolist()) == list(range(103))
    assert not np.array_equal(np.concatenate(first_pass), second_pass)  # a new order each pass
    assert np.array_equal(rows_of(1), first_pass[1])  # replayable (resume)
    # a batch holds matching dense, sparse and label rows
    dense, sparse, label = next(iter(batches))
    idx = (dense[:, 0].numpy() / 13).astype(int)
    assert (sparse.numpy() == data.sparse[idx]).all() and (label.numpy() == data.label[idx]).all()
    assert dense.dtype.is_floating_point and sparse.dtype == __import__("torch").int64


def test_evaluation_batches_keep_file_order():
    batches = list(EvalBatches(arrays(25), batch_size=10))
    assert [len(b[2]) for b in batches] == [10, 10, 5]
    assert (np.concatenate([b[0][:, 0].numpy() for b in batches]) / 13).tolist() == list(range(25))


def test_planted_clicks_are_learnable_in_principle():
    model = PlantedClicks([50] * 26, informative=13, effect_scale=0.6, dense_scale=0.4, bias=-2.2, seed=0)
    raw, sparse, label, p = model.sample(20_000, seed=1)
    assert raw.shape == (20_000, 13) and sparse.shape == (20_000, 26)
    assert (raw >= -1).all() and (raw == -1).any()  # like Criteo's counts, a few are -1 (the log clamps them)
    assert (raw == 0).mean() > 0.15  # missing counts read as 0, as in Criteo
    assert sparse.max() < 50 and np.bincount(sparse[:, 0])[0] > np.bincount(sparse[:, 0])[10]  # Zipf-like
    ctr = label.mean()
    assert 0.15 < ctr < 0.4
    assert PlantedClicks.bayes_accuracy(p) > max(ctr, 1 - ctr) + 0.05  # the signal beats the majority class
    again = PlantedClicks([50] * 26, informative=13, effect_scale=0.6, dense_scale=0.4, bias=-2.2, seed=0)
    a, b = model.sample(500, seed=3), again.sample(500, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # deterministic from (seed, sample seed)


def test_sparse_adagrad_run_prints_no_sparse_invariant_warning(tmp_path):
    # torch warns once per process, so a fresh process: one smoke step of the DLRM family with sparse tables.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = (
        "import sys, torch; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/tests']\n"
        "from helpers import compose_cfg\n"
        "from tasks.recommendation import build\n"
        "cfg = compose_cfg(['task=criteo_dlrm', 'optim=adagrad', 'trainer=smoke', 'data.source=synthetic',\n"
        "                   'data.synthetic.train_rows=320', 'data.synthetic.test_rows=16'])\n"
        "task = build(cfg)\n"
        "opt = torch.optim.Adagrad(task.model.parameters(), lr=0.01)\n"
        "task.loss(task.model, next(iter(task.train_loader))).backward()\n"
        "assert task.model.embeddings[0].weight.grad.is_sparse\n"
        "opt.step()\n"
    )
    proc = subprocess.run([sys.executable, "-W", "always", "-c", script, str(root)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Sparse invariant checks" not in proc.stderr and "SEGFAULT" not in proc.stderr


def test_check_data_on_the_composed_task_config(prepared, tmp_path):
    from helpers import compose_cfg

    with pytest.raises(FileNotFoundError, match="Kaggle"):
        check_data(compose_cfg(["task=criteo_dlrm", "data.source=real", f"data.root={tmp_path / 'none'}"]))
    check_data(compose_cfg(["task=criteo_dlrm", "data.source=synthetic", f"data.root={tmp_path / 'none'}"]))
    check_data(compose_cfg(["task=criteo_dlrm", "data.source=real", f"data.root={prepared}"]))
