"""Reading fairseq's output, BLEU as the paper scored it, checkpoint averaging, the synthetic corpus."""

from __future__ import annotations

import math

import pytest
import torch

from tasks.translation import average, scoring
from tasks.translation.synthetic import SyntheticSpec, make_mapping, translate, write_corpus

GENERATE_OUT = """\
INFO:fairseq_cli.generate:loading model(s)
S-1\tdas ist gut .
T-1\tthis is good .
H-1\t-0.2\tthis is good .
D-1\t-0.2\tthis is good .
S-0\tein haus@@ boot
T-0\ta house@@ boat
H-0\t-0.5\ta house@@ boat on the river
Generate test with beam=5: BLEU4 = 41.11, 80.0/62.5/50.0/33.3 (BP=1.000, ratio=1.250, syslen=10, reflen=8)
"""


def test_parse_generate_orders_by_sample_id_and_reads_the_bleu_line():
    gen = scoring.parse_generate(GENERATE_OUT)
    assert gen.ids == [0, 1] and gen.refs == ["a house@@ boat", "this is good ."]
    assert gen.hyps[0] == "a house@@ boat on the river"
    assert (gen.subset, gen.beam, gen.fairseq_bleu) == ("test", 5, 41.11)


def test_parse_generate_rejects_missing_hypotheses():
    with pytest.raises(ValueError, match="hypotheses"):
        scoring.parse_generate("T-0\ta b\nT-1\tc d\nH-0\t-1\ta b\n")


def test_tokenized_bleu_is_multi_bleu_case_handling_and_compound_splitting():
    hyps, refs = ["The cat sat on the mat ."], ["the cat sat on the mat ."]
    assert scoring.tokenized_bleu(hyps, refs, lowercase=True).score == pytest.approx(100.0)
    assert scoring.tokenized_bleu(hyps, refs, lowercase=False).score < 100.0  # WMT14: case-sensitive
    # no smoothing (fairseq / multi-bleu): a zero 4-gram precision gives 0
    assert scoring.tokenized_bleu(["a b c"], ["a b c d e"], lowercase=True).score == 0.0
    assert scoring.compound_split("well-known long-term") == "well ##AT##-##AT## known long ##AT##-##AT## term"
    split = scoring.tokenized_bleu(["a well-known x y"], ["a well-known x y"], lowercase=False,
                                   split_compounds=True)
    assert split.sys_len == 6  # "well ##AT##-##AT## known" counts as three tokens


def test_score_generation_uses_raw_references_for_sacrebleu_when_given(tmp_path):
    gen = scoring.parse_generate(GENERATE_OUT)
    raw = tmp_path / "test.en"
    raw.write_text("A houseboat.\nThis is good.\n")
    s = scoring.score_generation(gen, tgt_lang="en", lowercase=True, split_compounds=False, raw_refs_path=raw)
    assert s["sacrebleu_reference"] == "raw" and "case:lc" in s["sacrebleu_signature"]
    assert s["bleu_fairseq"] == 41.11 and s["n_sentences"] == 2
    s2 = scoring.score_generation(gen, tgt_lang="en", lowercase=True, split_compounds=False,
                                  raw_refs_path=tmp_path / "missing")
    assert s2["sacrebleu_reference"] == "detokenized-tokenized"


def test_parse_log_line():
    tag, stats = scoring.parse_log_line(
        '2026-01-01 00:00:00 | INFO | valid | {"epoch": 2, "valid_loss": "5.07", "valid_num_updates": "8"}')
    assert tag == "valid" and stats["valid_loss"] == "5.07"
    tag, stats = scoring.parse_log_line("2026-01-01 | INFO | fairseq.trainer | Loaded checkpoint "
                                        "/x/checkpoint_last.pt (epoch 3 @ 120 updates)")
    assert tag == "loaded" and stats["updates"] == 120
    assert scoring.parse_log_line("| INFO | fairseq_cli.train | done training") is None
    # --valid-subset test (the cpu scale): fairseq tags the line and prefixes its keys with "test".
    line = '2026-01-01 00:00:00 | INFO | test | {"epoch": 3, "test_loss": "9.418", "test_num_updates": "186"}'
    assert scoring.parse_log_line(line) is None  # not the subset asked for
    assert scoring.parse_log_line(line, "test") == ("valid", {"epoch": 3, "valid_loss": "9.418",
                                                              "valid_num_updates": "186"})


def _ckpt(path, value, step):
    torch.save({"model": {"w": torch.full((2, 3), float(value)), "b": torch.tensor([value], dtype=torch.float16),
                          "n": torch.tensor([7])},
                "cfg": {"x": 1}, "optimizer_history": [{"num_updates": step}], "last_optimizer_state": {"s": 1}},
               path)


def test_last_checkpoints_follow_fairseqs_write_order(tmp_path):
    for name in ("checkpoint1.pt", "checkpoint_2_150.pt", "checkpoint2.pt", "checkpoint_3_250.pt",
                 "checkpoint_2_100.pt", "checkpoint10.pt", "checkpoint_last.pt", "checkpoint_best.pt"):
        (tmp_path / name).write_bytes(b"")
    names = [p.name for p in average.last_checkpoints(tmp_path, 4)]
    assert names == ["checkpoint_2_150.pt", "checkpoint2.pt", "checkpoint_3_250.pt", "checkpoint10.pt"]
    assert len(average.last_checkpoints(tmp_path, 50)) == 6  # last/best never count


def test_average_checkpoints_is_the_elementwise_mean(tmp_path):
    paths = []
    for i, v in enumerate((1.0, 2.0, 6.0)):
        paths.append(tmp_path / f"checkpoint{i + 1}.pt")
        _ckpt(paths[-1], v, 10 * (i + 1))
    out = average.save_average(paths, tmp_path / "avg.pt")
    avg = torch.load(out, weights_only=False)
    assert torch.allclose(avg["model"]["w"], torch.full((2, 3), 3.0))
    assert avg["model"]["b"].dtype == torch.float16 and avg["model"]["b"].item() == 3.0
    assert avg["model"]["n"].item() == 7 and avg["last_optimizer_state"] is None
    assert avg["optimizer_history"][-1]["num_updates"] == 30  # the rest is the newest input's
    assert avg["averaged_from"] == ["checkpoint1.pt", "checkpoint2.pt", "checkpoint3.pt"]
    torch.save({"model": {"w": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="differ"):
        average.average_checkpoints([paths[0], tmp_path / "other.pt"])


def test_synthetic_corpus_is_deterministic_disjoint_and_follows_its_rule(tmp_path):
    spec = SyntheticSpec(n_train=50, n_valid=10, n_test=10, vocab=8, min_len=2, max_len=6, seed=3)
    write_corpus(tmp_path / "a", spec, "de", "en")
    write_corpus(tmp_path / "b", spec, "de", "en")
    for f in ("train.de", "test.en"):
        assert (tmp_path / "a" / f).read_text() == (tmp_path / "b" / f).read_text()
    mapping = make_mapping(spec)
    src = {s: (tmp_path / "a" / f"{s}.de").read_text().splitlines() for s in ("train", "valid", "test")}
    tgt = (tmp_path / "a" / "test.en").read_text().splitlines()
    assert [len(v) for v in src.values()] == [50, 10, 10]
    assert not (set(src["train"]) & set(src["test"])) and not (set(src["train"]) & set(src["valid"]))
    assert [" ".join(translate(s.split(), mapping)) for s in src["test"]] == tgt
    assert translate(["s0", "s1", "s2"], {"s0": "a", "s1": "b", "s2": "c"}) == ["b", "a", "c"]
    assert not math.isnan(len(mapping))
