"""Checks of a binarized (fairseq-preprocess) directory before a run, on a corpus binarized by fairseq itself."""

import shutil
import struct

import numpy as np
import pytest
from omegaconf import OmegaConf

from tasks.translation import check_data
from tasks.translation.data import check_split, read_index


def cfg_for(root, source="real"):
    return OmegaConf.create({
        "task": {"src": "de", "tgt": "en", "prepare_script": "scripts/prepare_iwslt14.sh",
                 "generate": {"subset": "test"}},
        "trainer": {"name": "paper"},
        "data": {"source": source, "root": str(root)}})


@pytest.fixture
def data_bin(synthetic_bin, tmp_path):
    return shutil.copytree(synthetic_bin, tmp_path / "bin")


def test_index_reader_agrees_with_the_tokens_fairseq_wrote(data_bin):
    # valid has 32 sentences; each ends with </s> (id 2 in fairseq's dictionaries)
    dtype, sizes, pointers = read_index(data_bin / "valid.de-en.en.idx")
    assert len(sizes) == 32 and pointers[0] == 0
    tokens = np.fromfile(data_bin / "valid.de-en.en.bin", dtype=dtype)
    assert len(tokens) == sizes.sum() and (pointers == np.concatenate([[0], np.cumsum(sizes)[:-1]]) * dtype.itemsize
                                           ).all()
    assert (tokens[np.cumsum(sizes) - 1] == 2).all()
    assert check_split(data_bin / "valid.de-en.en") == 32
    check_data(cfg_for(data_bin))


def test_truncated_bin_is_named_before_training(data_bin):
    binf = data_bin / "train.de-en.de.bin"
    raw = binf.read_bytes()
    binf.write_bytes(raw[:-10])
    with pytest.raises(ValueError) as e:
        check_data(cfg_for(data_bin))
    assert str(binf) in str(e.value) and f"holds {len(raw) - 10} bytes" in str(e.value) and "truncated" in str(e.value)


def test_truncated_or_foreign_index_is_named(data_bin):
    idx = data_bin / "test.de-en.en.idx"
    raw = idx.read_bytes()
    idx.write_bytes(raw[:100])
    with pytest.raises(ValueError, match=f"{idx} is truncated: 100 bytes, its header announces 32 sentences"):
        check_data(cfg_for(data_bin))
    idx.write_bytes(b"TNTIDX\x00\x00" + raw[8:])
    with pytest.raises(ValueError, match=f"{idx} is not a fairseq mmap index"):
        check_data(cfg_for(data_bin))


def test_languages_with_different_sentence_counts_are_refused(data_bin):
    # rewrite the en side of valid with one sentence fewer, self-consistent (index and bin agree)
    dtype, sizes, pointers = read_index(data_bin / "valid.de-en.en.idx")
    tokens = np.fromfile(data_bin / "valid.de-en.en.bin", dtype=dtype)
    n = len(sizes) - 1
    header = b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", 8 if dtype == np.uint16 else 4)
    (data_bin / "valid.de-en.en.idx").write_bytes(header + struct.pack("<Q", n) + sizes[:n].tobytes()
                                                   + pointers[:n].tobytes())
    (data_bin / "valid.de-en.en.bin").write_bytes(tokens[: sizes[:n].sum()].tobytes())
    with pytest.raises(ValueError, match="the valid split has 32 de sentences but 31 en sentences"):
        check_data(cfg_for(data_bin))


def test_missing_files_are_listed_with_how_to_prepare(data_bin, tmp_path):
    (data_bin / "test.de-en.de.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing: test.de-en.de.bin\). Prepare it with "
                                                r"`scripts/prepare_iwslt14.sh`"):
        check_data(cfg_for(data_bin))
    with pytest.raises(FileNotFoundError, match="missing: dict.de.txt, dict.en.txt, train.de-en.de.idx"):
        check_data(cfg_for(tmp_path / "nowhere"))
    check_data(cfg_for(tmp_path / "nowhere", source="synthetic"))


@pytest.mark.parametrize("task,script", [("iwslt14", "prepare_iwslt14.sh"), ("wmt14", "prepare_wmt14.sh")])
def test_check_data_on_the_composed_task_config(task, script, data_bin, tmp_path):
    from helpers import compose_cfg

    with pytest.raises(FileNotFoundError, match=script):
        check_data(compose_cfg([f"task={task}", "data.source=real", f"data.root={tmp_path / 'none'}"]))
    check_data(compose_cfg([f"task={task}", "data.source=synthetic", f"data.root={tmp_path / 'none'}"]))
    if task == "iwslt14":  # the corpus is de-en
        check_data(compose_cfg([f"task={task}", "data.source=real", f"data.root={data_bin}"]))
