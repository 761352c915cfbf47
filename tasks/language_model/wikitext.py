"""Wikitext-103 (Merity et al. 2016), word level: the standard token files ``wiki.{train,valid,test}.tokens``.

The files of ``wikitext-103-v1.zip`` (directory ``wikitext-103/``) are already tokenized: words separated by single
spaces, rare words as ``<unk>``, headings as ``= Title =``, blank lines between paragraphs. As for PTB (and
Transformer-XL, the code ref. [35] builds on), every line is split on whitespace and ends with ``<eos>``, blank lines
included; the vocabulary is the training split's words in order of first appearance (267,735 words with ``<eos>``).

The training split holds about 103M tokens: the files are encoded line by line into one int64 array (about 0.85 GB),
never held as a list of Python strings (several GB).
"""

from __future__ import annotations

from array import array
from pathlib import Path

import numpy as np
import torch

from .data import EOS, SPLITS, UNK, Vocab, check_text_file

WIKITEXT103_FILES = {split: f"wiki.{split}.tokens" for split in SPLITS}


def wikitext103_paths(root: str | Path) -> dict[str, Path]:
    root = Path(root)
    return {split: root / name for split, name in WIKITEXT103_FILES.items()}


def encode_file(path: Path, vocab: Vocab, grow: bool) -> torch.Tensor:
    """Token ids of ``path``, one ``<eos>`` per line; ``grow`` adds new words (training split), else ``<unk>``.

    ValueError naming the file when it is not UTF-8, holds no word, or (without ``grow``) has a word outside the
    vocabulary while the vocabulary has no ``<unk>``.
    """
    ids = array("q")
    unk, n_words = vocab.stoi.get(UNK), 0
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                words = line.split()
                n_words += len(words)
                if grow:
                    ids.extend(vocab.add(w) for w in words)
                else:
                    for w in words:
                        idx = vocab.stoi.get(w, unk)
                        if idx is None:
                            raise ValueError(f"{path}:{n}: word {w!r} is not in the training vocabulary and it "
                                             f"has no {UNK}")
                        ids.append(idx)
                ids.append(vocab.add(EOS) if grow else vocab.stoi[EOS])  # <eos> takes its first-appearance id too
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason}: byte {e.object[e.start:e.start + 1]!r}); "
                         f"the Wikitext-103 token files are UTF-8") from None
    if n_words == 0:
        raise ValueError(f"{path} holds no words ({path.stat().st_size} bytes); prepare Wikitext-103 again")
    return torch.from_numpy(np.frombuffer(ids, dtype=np.int64).copy())


def wikitext103_present(root: str | Path) -> dict[str, Path]:
    """The three paths, or FileNotFoundError saying which are missing and how to get them (one line)."""
    paths = wikitext103_paths(root)
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Wikitext-103 not found: looked for {', '.join(str(p) for p in paths.values())} (missing: "
            f"{', '.join(missing)}). Get it with `python -m scripts.prepare_wikitext103 --root {Path(root)}` "
            f"(downloads wikitext-103-v1.zip, internet) or `--from DIR` (a directory holding the three files), "
            f"or point data.root at such a directory; data.source=synthetic runs without it.")
    return paths


def check_wikitext103(root: str | Path) -> None:
    """Before a run: the three files present, none empty, all UTF-8 (FileNotFoundError / ValueError, one line).
    Streams the 540 MB in 16 MiB blocks: seconds, against a minute or two to read them for training."""
    for path in wikitext103_present(root).values():
        check_text_file(path)


def load_wikitext103(root: str | Path) -> tuple[Vocab, dict[str, torch.Tensor]]:
    """The vocabulary (from the training split) and each split as a 1-D tensor of token ids."""
    paths = wikitext103_present(root)
    vocab = Vocab()
    ids = {"train": encode_file(paths["train"], vocab, grow=True)}
    for split in ("valid", "test"):
        ids[split] = encode_file(paths[split], vocab, grow=False)
    return vocab, ids
