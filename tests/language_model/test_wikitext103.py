"""Wikitext-103: the token-file reader, the preparation script, the paper's recipe, and smoke runs on the synthetic
stand-in and on small files written in the real format."""

import glob
import json
import zipfile

import pytest
import torch
from helpers import compose_cfg

from engine.launch import launch
from scripts import prepare_wikitext103 as prep
from tasks.language_model import check_data, effective_task
from tasks.language_model.wikitext import load_wikitext103

# The real format: a leading space, tokens separated by single spaces, headings " = Title = ", blank lines " ".
TRAIN = [" \n", " = Valkyria Chronicles = \n", " \n", " The game 's <unk> began in 2010 . \n", " The game sold . \n"]
VALID = [" = Tower = \n", " The tower fell . \n"]  # "Tower", "tower", "fell" are not in training: <unk>
TEST = [" \n", " The game began . \n"]


def write_wikitext(root, train=TRAIN, valid=VALID, test=TEST):
    root.mkdir(parents=True, exist_ok=True)
    for split, lines in (("train", train), ("valid", valid), ("test", test)):
        (root / f"wiki.{split}.tokens").write_text("".join(lines), encoding="utf-8")
    return root


def records(tmp_path):
    return [json.loads(open(p).read()) for p in sorted(glob.glob(str(tmp_path / "results/runs/*/*/*.json")))]


def test_reader_splits_lines_appends_eos_and_maps_unknown_words_to_unk(tmp_path):
    vocab, ids = load_wikitext103(write_wikitext(tmp_path))
    assert vocab.itos == ["<eos>", "=", "Valkyria", "Chronicles", "The", "game", "'s", "<unk>", "began", "in", "2010",
                          ".", "sold"]
    # <eos> = 0 per line, blank lines included
    assert ids["train"].tolist() == [0, 1, 2, 3, 1, 0, 0, 4, 5, 6, 7, 8, 9, 10, 11, 0, 4, 5, 12, 11, 0]
    assert ids["valid"].tolist() == [1, 7, 1, 0, 4, 7, 7, 11, 0]
    assert ids["test"].tolist() == [0, 4, 5, 8, 11, 0]
    assert ids["train"].dtype == torch.long


def test_unknown_word_without_unk_names_the_file_and_line(tmp_path):
    write_wikitext(tmp_path, train=[" a b \n"], valid=[" a \n", " a c \n"])
    with pytest.raises(ValueError, match=r"wiki.valid.tokens:2: word 'c' is not in the training vocabulary"):
        load_wikitext103(tmp_path)


def test_missing_files_say_where_it_looked_and_how_to_get_them(tmp_path):
    (tmp_path / "wiki.train.tokens").write_text(" a \n")
    with pytest.raises(FileNotFoundError) as e:
        load_wikitext103(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "wiki.valid.tokens") in msg and "missing: wiki.valid.tokens, wiki.test.tokens" in msg
    assert "scripts.prepare_wikitext103" in msg and "data.source=synthetic" in msg


def test_prepare_unpacks_the_release_zip_and_reports_a_non_standard_copy(tmp_path, capsys):
    # The release's layout (wikitext-103/wiki.*.tokens inside wikitext-103-v1.zip), fetched through a file:// URL.
    src = write_wikitext(tmp_path / "src")
    archive = tmp_path / "wikitext-103-v1.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in src.iterdir():
            z.write(path, f"wikitext-103/{path.name}")
    root = tmp_path / "data"
    prep.download(root, urls=("file:///nonexistent/wikitext-103-v1.zip", archive.as_uri()))
    for split, lines in (("train", TRAIN), ("valid", VALID), ("test", TEST)):
        assert (root / f"wiki.{split}.tokens").read_text(encoding="utf-8") == "".join(lines)
    assert prep.check(root) is False
    out = capsys.readouterr().out
    assert "wiki.train.tokens: 16 tokens + 5 <eos> (published: 103,227,021)" in out
    assert "vocabulary: 13 words with <eos>" in out and "warning: this is not the standard Wikitext-103" in out
    copy = tmp_path / "copy"
    assert prep.main(["--root", str(copy), "--from", str(src)]) == 0
    assert (copy / "wiki.test.tokens").read_text(encoding="utf-8") == "".join(TEST)
    with pytest.raises(SystemExit, match="could not download Wikitext-103"):
        prep.download(tmp_path / "none", urls=("file:///nonexistent/wikitext-103-v1.zip",))


def test_paper_recipe_per_optimizer():
    t = effective_task(compose_cfg(["task=wikitext103_transformer"]))
    assert (t.dataset, t.epochs, t.batch_size, t.bptt, t.label_smoothing) == ("wikitext103", 30, 120, 32, 0.1)
    m = t.model
    assert (m.arch, m.n_layers, m.d_model, m.d_ff, m.dropout, m.tensorized.d_head, m.tensorized.n_cores) == (
        "tensorized", 6, 256, 2100, 0.3, 40, 1)
    assert (t.schedule.name, t.schedule.warmup_steps) == ("cosine", 4000)
    o = compose_cfg(["task=wikitext103_transformer", "optim=adahessian"]).optim
    assert (o.lr, o.block_size, o.hessian_power, tuple(o.betas), o.weight_decay) == (1.0, 4, 0.5, (0.9, 0.999), 0.0)
    o = compose_cfg(["task=wikitext103_transformer", "optim=adamw"]).optim
    assert (o.lr, o.weight_decay) == (2.5e-4, 0.0)
    o = compose_cfg(["task=wikitext103_transformer", "optim=sgd"]).optim
    assert (o.lr, o.momentum, o.weight_decay) == (0.1, 0.9, 0.0)


SMALL = ["data.synthetic.vocab_size=200", "data.synthetic.train_tokens=20000", "data.synthetic.valid_tokens=2000",
         "data.synthetic.test_tokens=2000"]


@pytest.mark.parametrize("optim", ["adamw", "adahessian"])
def test_smoke_run_on_the_synthetic_stand_in(optim, tmp_path, smoke_overrides):
    cfg = compose_cfg(["task=wikitext103_transformer", f"optim={optim}", *smoke_overrides, *SMALL])
    assert launch(cfg) == "completed"
    (rec,) = records(tmp_path)
    assert (rec["task"], rec["optim"], rec["data_source"], rec["status"]) == (
        "wikitext103_transformer", optim, "synthetic", "completed")
    lm = rec["extra"]["language_model"]
    assert lm["model"]["arch"] == "tensorized" and lm["model"]["n_layers"] == 6 and lm["model"]["d_model"] == 32
    assert lm["label_smoothing"] == 0.1 and lm["vocab_size"] == 200 and lm["bptt"] == 32
    assert rec["timing"]["n_hessian_steps"] == (4 if optim == "adahessian" else 0)
    assert 1.0 < rec["best_metric"] < float("inf")


def test_smoke_run_on_files_in_the_real_format(tmp_path, smoke_overrides):
    g = torch.Generator().manual_seed(0)
    words = ["The", "game", "'s", "<unk>", "began", "in", "2010", ".", "="]

    def lines(n):
        return [" " + " ".join(words[i] for i in torch.randint(0, 9, (8,), generator=g).tolist()) + " \n"
                for _ in range(n)]

    root = write_wikitext(tmp_path / "wikitext-103", train=lines(300), valid=lines(40), test=lines(40))
    cfg = compose_cfg(["task=wikitext103_transformer", "optim=adahessian", *smoke_overrides, "data.source=real",
                       f"data.root={root}", "trainer.epochs=1", "trainer.limit_val_batches=null"])
    assert launch(cfg) == "completed"
    (rec,) = records(tmp_path)
    lm = rec["extra"]["language_model"]
    assert rec["data_source"] == "real" and lm["vocab_size"] == 10  # 9 words + <eos>
    assert lm["tokens"] == {"train": 2700, "valid": 360, "test": 360}  # 9 tokens per line
    assert rec["history"][0]["test_ppl"] > 1.0 and rec["status"] == "completed"


def test_bad_files_are_named(tmp_path):
    write_wikitext(tmp_path, train=[" \n", " \n"])
    with pytest.raises(ValueError, match=r"wiki.train.tokens holds no words"):
        load_wikitext103(tmp_path)
    write_wikitext(tmp_path)
    (tmp_path / "wiki.test.tokens").write_bytes(b" caf\xe9 \n")  # Latin-1, not UTF-8
    with pytest.raises(ValueError, match=r"wiki.test.tokens is not UTF-8 text"):
        load_wikitext103(tmp_path)


def test_check_data_names_missing_and_non_utf8_files(tmp_path):
    # Contract 3 (launch calls it before the record exists): one line naming the files; synthetic needs nothing.
    root = tmp_path / "wikitext-103"
    cfg = compose_cfg(["task=wikitext103_transformer", "data.source=real", f"data.root={root}"])
    with pytest.raises(FileNotFoundError, match="missing: wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens"):
        check_data(cfg)
    check_data(compose_cfg(["task=wikitext103_transformer", "data.source=synthetic", f"data.root={root}"]))
    write_wikitext(root)
    check_data(cfg)
    (root / "wiki.valid.tokens").write_bytes(" caf\xe9 \n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"wiki.valid.tokens is not UTF-8 text \(byte b'\\xe9' at offset 4\)"):
        check_data(cfg)
