"""Word-level language-model data: Penn Treebank from Mikolov's text files, and a learnable synthetic stand-in.

PTB (``data.root``): ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt`` (Mikolov's "simple-examples" version:
lowercased, 10k words, ``<unk>`` and ``N`` already in the text). Every line is split on whitespace and ends with an
``<eos>`` token, the usual convention (929,589 / 73,760 / 82,430 tokens, a 10,000-word vocabulary).

Batching is the standard one for LMs: a split's token stream is cut into ``batch_size`` equal contiguous streams
(the tail that does not divide evenly is dropped), laid out as a ``(batch_size, length)`` tensor; batch ``i`` is the
window ``[:, i*bptt : (i+1)*bptt]`` as input and the same window shifted by one token as target (the last window
may be shorter). Windows are read in order and independently: the transformer keeps no state across windows.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
PTB_FILES = {split: f"ptb.{split}.txt" for split in SPLITS}


# -- vocabulary and tokenization ---------------------------------------------------------------------------
class Vocab:
    """Word <-> id, ids assigned in order of first appearance in the training text (``<eos>`` included)."""

    def __init__(self, words: Iterable[str] = ()):
        self.itos: list[str] = []
        self.stoi: dict[str, int] = {}
        for w in words:
            self.add(w)

    def add(self, word: str) -> int:
        idx = self.stoi.get(word)
        if idx is None:
            idx = self.stoi[word] = len(self.itos)
            self.itos.append(word)
        return idx

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, words: Sequence[str], where: str = "text") -> list[int]:
        """Ids of ``words``; a word outside the vocabulary becomes ``<unk>`` (an error when there is none)."""
        unk = self.stoi.get(UNK)
        out = []
        for w in words:
            idx = self.stoi.get(w, unk)
            if idx is None:
                raise ValueError(f"{where}: word {w!r} is not in the training vocabulary and it has no {UNK}")
            out.append(idx)
        return out


def tokenize_lines(lines: Iterable[str]) -> list[str]:
    """Whitespace tokens of every line, each line followed by ``<eos>`` (blank lines give just ``<eos>``)."""
    words: list[str] = []
    for line in lines:
        words.extend(line.split())
        words.append(EOS)
    return words


def read_tokens(path: str | Path) -> list[str]:
    """The tokens of a text file (:func:`tokenize_lines`), checked: ValueError naming the file when it is not UTF-8
    or holds no word (an empty training file would otherwise surface later as an unknown word in another split)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            words = tokenize_lines(f)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at offset {e.start}); "
                         f"the language-model corpora are UTF-8 plain text") from None
    if len(words) == words.count(EOS):
        raise ValueError(f"{path} holds no words ({path.stat().st_size} bytes); prepare the corpus again")
    return words


def check_text_file(path: str | Path) -> None:
    """Cheap check of a corpus file before a run: present, not empty, and (streamed, in 16 MiB blocks) UTF-8.
    FileNotFoundError or ValueError naming the file."""
    import codecs

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes); prepare the corpus again")
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                raise ValueError(f"{path} is not UTF-8 text (byte {block[e.start:e.start + 1]!r} at offset "
                                 f"{offset + e.start}); the language-model corpora are UTF-8 plain text") from None
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not UTF-8 text (it ends inside a multi-byte character: truncated?)") from None


def ptb_paths(root: str | Path) -> dict[str, Path]:
    root = Path(root)
    return {split: root / name for split, name in PTB_FILES.items()}


def check_ptb_present(root: str | Path) -> dict[str, Path]:
    """The three PTB paths, or FileNotFoundError saying which are missing and how to get them."""
    paths = ptb_paths(root)
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"PTB not found: looked for {', '.join(str(p) for p in paths.values())} (missing: "
            f"{', '.join(Path(m).name for m in missing)}). Get Mikolov's word-level PTB with "
            f"`python scripts/prepare_ptb.py --root {Path(root)}` (downloads simple-examples.tgz, internet) or "
            f"`python scripts/prepare_ptb.py --root {Path(root)} --from DIR` (a directory holding the three files), "
            f"or point data.root at such a directory; data.source=synthetic runs without it."
        )
    return paths


def check_ptb(root: str | Path) -> None:
    """Before a run: the three files present, none empty, all UTF-8 (FileNotFoundError / ValueError, one line)."""
    for path in check_ptb_present(root).values():
        check_text_file(path)


def load_ptb(root: str | Path) -> tuple[Vocab, dict[str, torch.Tensor]]:
    """The vocabulary (from the training split) and each split as a 1-D tensor of token ids."""
    paths = check_ptb_present(root)
    words = {split: read_tokens(paths[split]) for split in SPLITS}
    vocab = Vocab(words["train"])
    ids = {split: torch.tensor(vocab.encode(words[split], where=str(paths[split])), dtype=torch.long)
           for split in SPLITS}
    return vocab, ids


# -- batching ----------------------------------------------------------------------------------------------
def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``(batch_size, n // batch_size)``: row ``b`` is the ``b``-th contiguous stretch of the stream."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    length = ids.numel() // batch_size
    if length < 2:
        raise ValueError(f"a stream of {ids.numel()} tokens is too short for {batch_size} streams of >= 2 tokens")
    return ids[: length * batch_size].view(batch_size, length).contiguous()


class LMWindows:
    """Batches ``(input, target)`` of shape ``(streams, <=bptt)`` over a batchified stream, in order."""

    def __init__(self, ids: torch.Tensor, batch_size: int, bptt: int):
        if bptt < 1:
            raise ValueError(f"bptt must be >= 1, got {bptt}")
        self.data = batchify(ids, batch_size)
        self.bptt = bptt

    def __len__(self) -> int:
        return math.ceil((self.data.size(1) - 1) / self.bptt)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.data.size(1)
        for start in range(0, n - 1, self.bptt):
            seq = min(self.bptt, n - 1 - start)
            yield self.data[:, start : start + seq], self.data[:, start + 1 : start + 1 + seq]

    @property
    def n_targets(self) -> int:
        """Tokens predicted in one pass (each stream's first token is never a target)."""
        return self.data.size(0) * (self.data.size(1) - 1)


# -- synthetic stand-in ------------------------------------------------------------------------------------
class MarkovSource:
    """A random first-order Markov chain over ``vocab_size`` tokens: a learnable stream with PTB's shapes.

    Each token has ``successors`` possible next tokens (drawn from a Zipf-like unigram, so some tokens are frequent
    as in text) with Dirichlet(1) probabilities; with probability ``restart_prob`` the next token is instead drawn
    from the unigram (the chain mixes and every token occurs). An LM that learns the transitions reaches a
    perplexity near :meth:`entropy_rate`'s exponential, far below the vocabulary size and the unigram perplexity.
    """

    def __init__(self, vocab_size: int, successors: int = 4, restart_prob: float = 0.1, zipf: float = 1.1,
                 seed: int = 0):
        if vocab_size < 2 or not 1 <= successors <= vocab_size or not 0.0 < restart_prob <= 1.0:
            raise ValueError(f"synthetic LM needs vocab_size >= 2, 1 <= successors <= vocab_size and "
                             f"0 < restart_prob <= 1; got {vocab_size}, {successors}, {restart_prob}")
        rng = np.random.default_rng(seed)
        self.vocab_size = vocab_size
        self.restart_prob = restart_prob
        unigram = 1.0 / np.arange(1, vocab_size + 1) ** zipf
        self.unigram = unigram / unigram.sum()
        # Distinct successors per row, Zipf-weighted: the first `successors` distinct ids of oversampled draws.
        cand = rng.choice(vocab_size, size=(vocab_size, 4 * successors), p=self.unigram).tolist()
        rows = []
        for row in cand:
            picked = list(dict.fromkeys(row))[:successors]
            if len(picked) < successors:  # rare: top up without replacement
                rest = np.setdiff1d(np.arange(vocab_size), picked)
                picked += rng.choice(rest, size=successors - len(picked), replace=False).tolist()
            rows.append(picked)
        self.next_tokens = np.array(rows, dtype=np.int64)
        self.next_probs = rng.dirichlet(np.ones(successors), size=vocab_size)

    def stationary(self, iters: int = 500) -> np.ndarray:
        """The chain's stationary distribution, by power iteration (it mixes fast: restarts are frequent)."""
        pi = self.unigram.copy()
        for _ in range(iters):
            nxt = self.restart_prob * self.unigram
            np.add.at(nxt, self.next_tokens.ravel(), ((1 - self.restart_prob) * pi[:, None] * self.next_probs).ravel())
            pi = nxt / nxt.sum()
        return pi

    def entropy_rate(self) -> float:
        """Entropy per token (nats) of the stationary chain: exp() of it is the best achievable perplexity."""
        r, u = self.restart_prob, self.unigram
        base = -(r * u * np.log(r * u)).sum()  # every row's restart part, before correcting the successors
        ru = r * u[self.next_tokens]  # (V, K): the restart mass on each row's successors
        row_p = ru + (1 - r) * self.next_probs
        # Successor ids within a row are distinct (drawn without replacement), so the corrections add up.
        row_h = base + (ru * np.log(ru)).sum(1) - (row_p * np.log(row_p)).sum(1)
        return float((self.stationary() * row_h).sum())

    def sample(self, n: int, seed: int) -> torch.Tensor:
        rng = np.random.default_rng(seed)
        restart = (rng.random(n) < self.restart_prob).tolist()
        fresh = rng.choice(self.vocab_size, size=n, p=self.unigram).tolist()
        u = rng.random(n).tolist()
        cum = np.cumsum(self.next_probs, axis=1)
        cum[:, -1] = 1.0
        cum, nxt = cum.tolist(), self.next_tokens.tolist()
        out = [0] * n
        tok = fresh[0]
        for i in range(n):  # sequential by nature; about a second per million tokens
            if i == 0 or restart[i]:
                tok = fresh[i]
            else:
                row = nxt[tok]
                tok = row[min(bisect.bisect_right(cum[tok], u[i]), len(row) - 1)]
            out[i] = tok
        return torch.tensor(out, dtype=torch.long)


def synthetic_splits(s) -> tuple[MarkovSource, dict[str, torch.Tensor]]:
    """Train/valid/test streams of one Markov source (``data.synthetic``), each from its own seed."""
    source = MarkovSource(s.vocab_size, s.successors, s.restart_prob, s.zipf, seed=s.seed)
    sizes = {"train": s.train_tokens, "valid": s.valid_tokens, "test": s.test_tokens}
    return source, {split: source.sample(n, seed=s.seed * 1000 + 1 + i) for i, (split, n) in enumerate(sizes.items())}
