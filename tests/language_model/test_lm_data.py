"""PTB reading, vocabulary, LM batching and the Markov stand-in, against hand-computed expectations."""

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tasks.language_model import check_data
from tasks.language_model.data import (
    EOS,
    LMWindows,
    MarkovSource,
    batchify,
    check_text_file,
    load_ptb,
    read_tokens,
    tokenize_lines,
)

# Mikolov's format: a leading space, words separated by single spaces, a trailing space, one sentence per line.
TRAIN = [" the cat sat \n", " the dog <unk> \n", "\n", " a cat \n"]
VALID = [" the bird sat \n"]  # "bird" is not in the training text: <unk>
TEST = [" a dog \n", " cat \n"]


def write_ptb(root, train=TRAIN, valid=VALID, test=TEST):
    root.mkdir(parents=True, exist_ok=True)
    for name, lines in (("train", train), ("valid", valid), ("test", test)):
        (root / f"ptb.{name}.txt").write_text("".join(lines))
    return root


def test_tokenize_appends_eos_per_line_including_blank_lines():
    assert tokenize_lines([" a b \n", "\n", "c"]) == ["a", "b", EOS, EOS, "c", EOS]


def test_vocab_is_first_appearance_order_of_train_and_unk_maps_unknown_words(tmp_path):
    vocab, ids = load_ptb(write_ptb(tmp_path))
    assert vocab.itos == ["the", "cat", "sat", EOS, "dog", "<unk>", "a"]
    # train: the cat sat <eos> the dog <unk> <eos> <eos> a cat <eos>
    assert ids["train"].tolist() == [0, 1, 2, 3, 0, 4, 5, 3, 3, 6, 1, 3]
    assert ids["valid"].tolist() == [0, 5, 2, 3]  # bird -> <unk>
    assert ids["test"].tolist() == [6, 4, 3, 1, 3]
    assert ids["train"].dtype == torch.long


def test_unknown_word_without_unk_in_vocabulary_is_an_error(tmp_path):
    write_ptb(tmp_path, train=[" a b \n"], valid=[" a c \n"], test=[" a \n"])
    with pytest.raises(ValueError, match="'c' is not in the training vocabulary"):
        load_ptb(tmp_path)


def test_missing_ptb_says_where_it_looked_and_how_to_get_it(tmp_path):
    (tmp_path / "ptb.train.txt").write_text(" a \n")
    with pytest.raises(FileNotFoundError) as e:
        load_ptb(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "ptb.valid.txt") in msg and str(tmp_path / "ptb.test.txt") in msg
    assert "missing: ptb.valid.txt, ptb.test.txt" in msg
    assert "scripts/prepare_ptb.py" in msg and "data.source=synthetic" in msg


def ptb_cfg(root, source="real"):
    return OmegaConf.create({"task": {"dataset": "ptb"}, "data": {"source": source, "root": str(root)}})


def test_empty_train_file_is_named_not_the_valid_file(tmp_path):
    write_ptb(tmp_path, train=[])
    for call in (lambda: check_data(ptb_cfg(tmp_path)), lambda: load_ptb(tmp_path)):
        with pytest.raises(ValueError) as e:
            call()
        assert str(tmp_path / "ptb.train.txt") in str(e.value) and "ptb.valid" not in str(e.value)
    write_ptb(tmp_path, train=["\n", "  \n"])  # only blank lines: no word either
    with pytest.raises(ValueError, match="ptb.train.txt holds no words"):
        load_ptb(tmp_path)


def test_non_utf8_text_is_named_with_the_offset(tmp_path):
    write_ptb(tmp_path)
    (tmp_path / "ptb.test.txt").write_bytes(" a dog \n caf\xe9 \n".encode("latin-1"))
    for call in (lambda: check_data(ptb_cfg(tmp_path)), lambda: load_ptb(tmp_path)):
        with pytest.raises(ValueError, match=r"ptb.test.txt is not UTF-8 text \(byte b'\\xe9' at offset 12\)"):
            call()


def test_check_text_file_streams_blocks_and_catches_a_character_cut_at_the_end(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("ok é\n".encode() + "é".encode()[:1])  # a 2-byte character cut in half
    with pytest.raises(ValueError, match="ends inside a multi-byte character"):
        check_text_file(p)
    p.write_bytes("ok é\n".encode())
    check_text_file(p)
    assert read_tokens(p) == ["ok", "é", EOS]


def test_check_data_reports_missing_files_and_skips_synthetic(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing: ptb.train.txt, ptb.valid.txt, ptb.test.txt"):
        check_data(ptb_cfg(tmp_path))
    check_data(ptb_cfg(tmp_path, source="synthetic"))
    check_data(ptb_cfg(write_ptb(tmp_path)))


def test_batchify_cuts_contiguous_streams_and_drops_the_tail():
    data = batchify(torch.arange(21), 2)
    assert data.tolist() == [list(range(0, 10)), list(range(10, 20))]  # token 20 dropped
    with pytest.raises(ValueError, match="too short"):
        batchify(torch.arange(5), 3)


def test_windows_are_shifted_by_one_and_the_last_is_shorter():
    windows = LMWindows(torch.arange(21), batch_size=2, bptt=4)
    batches = list(windows)
    assert len(windows) == len(batches) == 3  # targets 1..9 per stream: windows of 4, 4, 1
    x0, y0 = batches[0]
    assert x0.tolist() == [[0, 1, 2, 3], [10, 11, 12, 13]] and y0.tolist() == [[1, 2, 3, 4], [11, 12, 13, 14]]
    x2, y2 = batches[2]
    assert x2.tolist() == [[8], [18]] and y2.tolist() == [[9], [19]]
    # every target is predicted exactly once, from the token before it
    assert sum(y.numel() for _, y in batches) == windows.n_targets == 18
    assert torch.cat([y for _, y in batches], dim=1).tolist() == [list(range(1, 10)), list(range(11, 20))]


def test_markov_source_is_deterministic_and_its_entropy_rate_matches_the_dense_chain():
    src = MarkovSource(vocab_size=30, successors=3, restart_prob=0.1, zipf=1.1, seed=4)
    again = MarkovSource(vocab_size=30, successors=3, restart_prob=0.1, zipf=1.1, seed=4)
    assert np.array_equal(src.next_tokens, again.next_tokens) and torch.equal(src.sample(500, 1), again.sample(500, 1))
    assert all(len(set(row)) == 3 for row in src.next_tokens.tolist())  # distinct successors
    # Dense transition matrix, its stationary law by eigenvector, its entropy rate: the same numbers.
    p = np.tile(0.1 * src.unigram, (30, 1))
    for i in range(30):
        p[i, src.next_tokens[i]] += 0.9 * src.next_probs[i]
    evals, evecs = np.linalg.eig(p.T)
    pi = np.real(evecs[:, np.argmin(abs(evals - 1))])
    pi /= pi.sum()
    assert np.allclose(src.stationary(), pi, atol=1e-10)
    assert math.isclose(src.entropy_rate(), float(-(pi[:, None] * p * np.log(p)).sum()), rel_tol=1e-9)
    # The sampled stream follows the chain: empirical transition frequencies from a frequent token match p.
    stream = src.sample(200_000, seed=2).numpy()
    tok = int(np.argmax(pi))
    nxt = stream[1:][stream[:-1] == tok]
    freq = np.bincount(nxt, minlength=30) / len(nxt)
    assert np.abs(freq - p[tok]).max() < 0.02
    # Learnable: the best perplexity is far below the vocabulary size.
    assert math.exp(src.entropy_rate()) < 30 / 3


def test_check_data_on_the_composed_task_config(tmp_path):
    from helpers import compose_cfg

    over = ["task=ptb_transformer", f"data.root={tmp_path}"]
    with pytest.raises(FileNotFoundError, match="ptb.train.txt"):
        check_data(compose_cfg([*over, "data.source=real"]))
    check_data(compose_cfg([*over, "data.source=synthetic"]))
    write_ptb(tmp_path)
    check_data(compose_cfg([*over, "data.source=real"]))


def test_check_data_leaves_other_corpora_to_their_own_check(tmp_path):
    cfg = OmegaConf.create({"task": {"dataset": "wikitext103"}, "data": {"source": "real", "root": str(tmp_path)}})
    with pytest.raises(FileNotFoundError) as e:  # its own files are demanded (test_wikitext103.py), never ptb.*.txt
        check_data(cfg)
    assert "wiki.train.tokens" in str(e.value) and "ptb." not in str(e.value)
