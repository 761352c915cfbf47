"""Data preparation of fairseq's examples/translation scripts, in Python (sacremoses, subword-nmt).

fairseq's ``prepare-iwslt14.sh`` and ``prepare-wmt14en2de.sh`` call the Moses perl scripts; here the same steps
use sacremoses (the Python port of the Moses tokenizer, punctuation normaliser and detokenizer) and subword-nmt
(the same package fairseq's scripts clone). Steps, as in fairseq:

IWSLT14 De-En (``iwslt14``), from the extracted ``de-en.tgz`` (``<orig>/de-en/train.tags.de-en.{de,en}`` and
``IWSLT14.TED*.de-en.{de,en}.xml``):
  train: drop ``<url>``, ``<talkid>``, ``<keywords>`` lines, strip ``<title>``/``<description>`` tags, Moses
  tokenize (no aggressive hyphen splitting), clean-corpus-n (ratio 1.5, 1..175 tokens), lowercase; valid = every
  23rd line of that, train = the rest; test = dev2010 + TEDX.dev2012 + tst2010 + tst2011 + tst2012 ``<seg>``s,
  tokenized and lowercased; joint BPE with 10,000 merges learned on train.de + train.en, applied to all.
WMT14 En-De (``wmt14``), from europarl-v7, commoncrawl and news-commentary-v12 (``--icml17``: v9) and
newstest2014 (``test-full``):
  train: normalize punctuation, remove non-printing characters, Moses tokenize with ``-a`` (aggressive hyphen
  splitting); valid = newstest2013 (``dev/``), as the paper (``--valid-from train``: every 100th line of the
  training corpus, as fairseq's script, and train = the rest);
  test = newstest2014 ``<seg>``s, tokenized; joint BPE with 40,000 merges; clean-corpus-n (ratio 1.5, 1..250) on
  train and valid after BPE (not on test).
Both: ``fairseq-preprocess --joined-dictionary`` into ``<out>/data-bin``; raw (untokenized) test references go to
``<out>/raw/test.<tgt>`` for sacreBLEU.

``python -m tasks.translation.prepare iwslt14 --orig ORIG --out OUT`` (scripts/prepare_iwslt14.sh downloads and
calls this); the steps are functions so that tests can run them on a few lines.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from multiprocessing import Pool
from pathlib import Path

IWSLT_TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
                   "IWSLT14.TED.tst2012")
_SEG_OPEN = re.compile(r'<seg id="[0-9]*">\s*')
_SEG_CLOSE = re.compile(r"\s*</seg>\s*")


# -- text steps ------------------------------------------------------------------------------------------
def read_lines(path: Path | str) -> list[str]:
    with open(path, encoding="utf-8", newline="\n") as f:
        return [line.rstrip("\n") for line in f]


def write_lines(path: Path | str, lines: Iterable[str]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")


def iwslt_train_filter(lines: Iterable[str]) -> list[str]:
    """fairseq: ``grep -v '<url>' | grep -v '<talkid>' | grep -v '<keywords>'``, then drop title/description tags."""
    out = []
    for line in lines:
        if "<url>" in line or "<talkid>" in line or "<keywords>" in line:
            continue
        for tag in ("<title>", "</title>", "<description>", "</description>"):
            line = line.replace(tag, "")
        out.append(line)
    return out


def xml_segments(lines: Iterable[str]) -> list[str]:
    """fairseq: ``grep '<seg id'`` and strip the tags; ``’`` -> ``'``."""
    out = []
    for line in lines:
        if "<seg id" not in line:
            continue
        line = _SEG_CLOSE.sub("", _SEG_OPEN.sub("", line))
        out.append(line.replace("\u2019", "'"))
    return out


_LAST_WORD_PERIOD = re.compile(r"^(\S*[^.\s]\S*)\.$")


def _split_final_period(line: str) -> str:
    # Moses' tokenizer.perl splits the period off the last word of a line even when the word is a non-breaking
    # prefix ("... nachhaltigen Art." -> "Art ."): "unlikely to be non-breaking prefixes". sacremoses 0.x lacks
    # that rule; this restores it (words made only of dots are left alone, as in perl).
    head, _, last = line.rpartition(" ")
    m = _LAST_WORD_PERIOD.match(last)
    if not m:
        return line
    return (head + " " if head else "") + m.group(1) + " ."


def _tokenize_chunk(args: tuple[str, bool, list[str]]) -> list[str]:
    from sacremoses import MosesTokenizer

    lang, aggressive, lines = args
    tok = MosesTokenizer(lang=lang)
    return [_split_final_period(tok.tokenize(line, aggressive_dash_splits=aggressive, return_str=True,
                                             escape=True)) for line in lines]


def tokenize(lines: Sequence[str], lang: str, *, aggressive: bool = False, workers: int = 1) -> list[str]:
    """Moses tokenizer (``tokenizer.perl -l LANG [-a]``), escaping as Moses does (``&apos;`` ...)."""
    lines = list(lines)
    if workers <= 1 or len(lines) < 10_000:
        return _tokenize_chunk((lang, aggressive, lines))
    size = (len(lines) + workers * 4 - 1) // (workers * 4)
    chunks = [(lang, aggressive, lines[i:i + size]) for i in range(0, len(lines), size)]
    with Pool(workers) as pool:
        return [x for part in pool.map(_tokenize_chunk, chunks) for x in part]


def normalize_punctuation(lines: Iterable[str], lang: str) -> list[str]:
    """``normalize-punctuation.perl -l LANG``."""
    from sacremoses import MosesPunctNormalizer

    norm = MosesPunctNormalizer(lang=lang)
    return [norm.normalize(line) for line in lines]


def remove_non_printing(lines: Iterable[str]) -> list[str]:
    """``remove-non-printing-char.perl``: every Unicode control/format/unassigned character becomes a space."""
    import regex

    pattern = regex.compile(r"\p{C}")
    return [pattern.sub(" ", line) for line in lines]


def lowercase(lines: Iterable[str]) -> list[str]:
    return [line.lower() for line in lines]


def clean_corpus(src: Sequence[str], tgt: Sequence[str], *, ratio: float, min_len: int, max_len: int
                 ) -> tuple[list[str], list[str]]:
    """``clean-corpus-n.perl -ratio R CORPUS src tgt OUT MIN MAX``: squeeze whitespace, drop pairs with a side
    empty, shorter than MIN or longer than MAX tokens, or whose token-count ratio exceeds R."""
    if len(src) != len(tgt):
        raise ValueError(f"parallel corpus sides differ in length: {len(src)} vs {len(tgt)}")
    out_s, out_t = [], []
    for s, t in zip(src, tgt):
        s = " ".join(s.split())
        t = " ".join(t.split())
        if not s or not t:
            continue
        ns, nt = len(s.split(" ")), len(t.split(" "))
        if ns > max_len or nt > max_len or ns < min_len or nt < min_len:
            continue
        if ns / nt > ratio or nt / ns > ratio:
            continue
        out_s.append(s)
        out_t.append(t)
    return out_s, out_t


def split_every(lines: Sequence[str], n: int) -> tuple[list[str], list[str]]:
    """(rest, every n-th line): awk ``NR % n == 0`` (1-based line numbers)."""
    rest = [x for i, x in enumerate(lines, 1) if i % n != 0]
    picked = [x for i, x in enumerate(lines, 1) if i % n == 0]
    return rest, picked


def learn_bpe(train_files: Sequence[Path | str], codes: Path | str, merges: int, workers: int = 1) -> None:
    """``learn_bpe.py -s MERGES < cat(train_files) > codes`` (subword-nmt, its default min frequency 2)."""
    from subword_nmt.learn_bpe import learn_bpe as _learn

    joined = Path(str(codes) + ".train")  # cat train.src train.tgt, as fairseq's script does
    with open(joined, "w", encoding="utf-8") as out:
        for f in train_files:
            out.write(Path(f).read_text(encoding="utf-8"))
    try:
        with open(joined, encoding="utf-8") as inp, open(codes, "w", encoding="utf-8") as out:
            _learn(inp, out, merges, num_workers=max(1, workers))
    finally:
        joined.unlink()


def _bpe_chunk(args: tuple[str, list[str]]) -> list[str]:
    from subword_nmt.apply_bpe import BPE

    codes, lines = args
    with open(codes, encoding="utf-8") as f:
        bpe = BPE(f)
    return [bpe.process_line(line + "\n").rstrip("\n") for line in lines]


def apply_bpe(lines: Sequence[str], codes: Path | str, workers: int = 1) -> list[str]:
    """``apply_bpe.py -c codes`` (separator ``@@``)."""
    lines = list(lines)
    if workers <= 1 or len(lines) < 10_000:
        return _bpe_chunk((str(codes), lines))
    size = (len(lines) + workers * 4 - 1) // (workers * 4)
    with Pool(workers) as pool:
        parts = pool.map(_bpe_chunk, [(str(codes), lines[i:i + size]) for i in range(0, len(lines), size)])
    return [x for part in parts for x in part]


def binarize(text_dir: Path, dest: Path, src: str, tgt: str, *, workers: int = 1,
             splits: Sequence[str] = ("train", "valid", "test")) -> None:
    """``fairseq-preprocess --joined-dictionary`` (a subprocess: fairseq is not imported here)."""
    argv = [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", src, "--target-lang", tgt,
            "--destdir", str(dest), "--joined-dictionary", "--workers", str(workers)]
    for split, flag in (("train", "--trainpref"), ("valid", "--validpref"), ("test", "--testpref")):
        if split in splits:
            argv += [flag, str(text_dir / split)]
    subprocess.run(argv, check=True)


# -- the two datasets ---------------------------------------------------------------------------------------
def prepare_iwslt14(orig: Path, out: Path, *, merges: int = 10_000, workers: int = 1, do_binarize: bool = True,
                    src: str = "de", tgt: str = "en") -> Path:
    lang = f"{src}-{tgt}"
    base = orig / lang if (orig / lang).is_dir() else orig
    tmp, tokdir = out / "tmp", out / "tokenized"
    tok = {}
    for l in (src, tgt):
        tok[l] = tokenize(iwslt_train_filter(read_lines(base / f"train.tags.{lang}.{l}")), l, workers=workers)
    s, t = clean_corpus(tok[src], tok[tgt], ratio=1.5, min_len=1, max_len=175)
    clean = {src: lowercase(s), tgt: lowercase(t)}
    for l in (src, tgt):
        train, valid = split_every(clean[l], 23)
        write_lines(tmp / f"train.{l}", train)
        write_lines(tmp / f"valid.{l}", valid)
        test_raw = [x for name in IWSLT_TEST_SETS for x in xml_segments(read_lines(base / f"{name}.{lang}.{l}.xml"))]
        write_lines(out / "raw" / f"test.{l}", test_raw)
        write_lines(tmp / f"test.{l}", lowercase(tokenize(test_raw, l, workers=workers)))
    codes = tokdir / "code"
    tokdir.mkdir(parents=True, exist_ok=True)
    learn_bpe([tmp / f"train.{src}", tmp / f"train.{tgt}"], codes, merges, workers)
    for l in (src, tgt):
        for split in ("train", "valid", "test"):
            write_lines(tokdir / f"{split}.{l}", apply_bpe(read_lines(tmp / f"{split}.{l}"), codes, workers))
    if do_binarize:
        binarize(tokdir, out / "data-bin", src, tgt, workers=workers)
    return out


WMT14_CORPORA = ("training/europarl-v7.de-en", "commoncrawl.de-en", "training/news-commentary-v12.de-en")


def _wmt_clean_text(lines: Iterable[str], lang: str, workers: int) -> list[str]:
    return tokenize(remove_non_printing(normalize_punctuation(lines, lang)), lang, aggressive=True, workers=workers)


def prepare_wmt14(orig: Path, out: Path, *, merges: int = 40_000, workers: int = 1, icml17: bool = False,
                  valid_from: str = "newstest2013", do_binarize: bool = True, src: str = "en", tgt: str = "de") -> Path:
    corpora = [c.replace("v12", "v9") if icml17 else c for c in WMT14_CORPORA]
    tmp, tokdir = out / "tmp", out / "tokenized"
    for l in (src, tgt):
        lines: list[str] = []
        for c in corpora:
            lines += _wmt_clean_text(read_lines(orig / f"{c}.{l}"), l, workers)
        if valid_from == "train":
            train, valid = split_every(lines, 100)
        elif valid_from == "newstest2013":
            train, valid = lines, _wmt_clean_text(read_lines(orig / "dev" / f"newstest2013.{l}"), l, workers)
        else:
            raise ValueError(f"valid_from={valid_from!r}; choose train or newstest2013")
        write_lines(tmp / f"train.{l}", train)
        write_lines(tmp / f"valid.{l}", valid)
        kind = "src" if l == src else "ref"
        test_raw = xml_segments(read_lines(orig / "test-full" / f"newstest2014-deen-{kind}.{l}.sgm"))
        write_lines(out / "raw" / f"test.{l}", test_raw)
        write_lines(tmp / f"test.{l}", tokenize(test_raw, l, aggressive=True, workers=workers))
    codes = tokdir / "code"
    tokdir.mkdir(parents=True, exist_ok=True)
    learn_bpe([tmp / f"train.{src}", tmp / f"train.{tgt}"], codes, merges, workers)
    bpe = {(split, l): apply_bpe(read_lines(tmp / f"{split}.{l}"), codes, workers)
           for split in ("train", "valid", "test") for l in (src, tgt)}
    for split in ("train", "valid"):
        s, t = clean_corpus(bpe[(split, src)], bpe[(split, tgt)], ratio=1.5, min_len=1, max_len=250)
        write_lines(tokdir / f"{split}.{src}", s)
        write_lines(tokdir / f"{split}.{tgt}", t)
    for l in (src, tgt):
        write_lines(tokdir / f"test.{l}", bpe[("test", l)])
    if do_binarize:
        binarize(tokdir, out / "data-bin", src, tgt, workers=workers)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Prepare IWSLT14 De-En or WMT14 En-De as fairseq's scripts do.")
    ap.add_argument("dataset", choices=("iwslt14", "wmt14"))
    ap.add_argument("--orig", required=True, type=Path, help="extracted downloads (see scripts/prepare_*.sh)")
    ap.add_argument("--out", required=True, type=Path, help="output folder (data.root is <out>/data-bin)")
    ap.add_argument("--bpe-merges", type=int, default=None, help="default: 10000 (iwslt14), 40000 (wmt14)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--icml17", action="store_true", help="wmt14: news-commentary v9 instead of v12")
    ap.add_argument("--valid-from", default="newstest2013", choices=("train", "newstest2013"),
                    help="wmt14: newstest2013 (the paper, default) or every 100th training line (fairseq's script)")
    ap.add_argument("--no-binarize", action="store_true")
    a = ap.parse_args(argv)
    if a.dataset == "iwslt14":
        prepare_iwslt14(a.orig, a.out, merges=a.bpe_merges or 10_000, workers=a.workers,
                        do_binarize=not a.no_binarize)
    else:
        prepare_wmt14(a.orig, a.out, merges=a.bpe_merges or 40_000, workers=a.workers, icml17=a.icml17,
                      valid_from=a.valid_from, do_binarize=not a.no_binarize)
    print(f"prepared {a.dataset} in {a.out}")


if __name__ == "__main__":
    main()
