"""A small, learnable synthetic parallel corpus for smoke runs and tests (no download, no BPE).

Source sentences are random sequences over a source vocabulary ``s0 .. s{V-1}``; the target is a fixed
word-for-word mapping of the source (a random permutation onto ``t0 .. t{V-1}``) with every pair of adjacent
words swapped, so the model has to learn a lexicon and a local reordering (attention matters, copying does not
work). A model that learns the mapping gets BLEU 100; the corpus is deterministic for a given seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SyntheticSpec:
    n_train: int = 2000
    n_valid: int = 100
    n_test: int = 100
    vocab: int = 24
    min_len: int = 3
    max_len: int = 10
    seed: int = 0


def translate(words: list[str], mapping: dict[str, str]) -> list[str]:
    """The corpus's target for a source sentence: mapped word by word, adjacent pairs swapped."""
    out = [mapping[w] for w in words]
    for i in range(0, len(out) - 1, 2):
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


def make_mapping(spec: SyntheticSpec) -> dict[str, str]:
    rng = random.Random(spec.seed * 7919 + 1)
    targets = [f"t{i}" for i in range(spec.vocab)]
    rng.shuffle(targets)
    return {f"s{i}": t for i, t in enumerate(targets)}


def write_corpus(out_dir: Path | str, spec: SyntheticSpec, src: str = "src", tgt: str = "tgt") -> dict[str, int]:
    """Write ``{train,valid,test}.{src,tgt}`` (one sentence per line, space-separated) and return line counts.

    Valid and test sentences never occur in train (so BLEU measures generalisation of the mapping).
    """
    if spec.vocab < 2 or not 1 <= spec.min_len <= spec.max_len:
        raise ValueError(f"bad synthetic corpus spec {spec}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mapping = make_mapping(spec)
    rng = random.Random(spec.seed)
    seen: set[tuple[str, ...]] = set()
    counts = {}
    for split, n in (("valid", spec.n_valid), ("test", spec.n_test), ("train", spec.n_train)):
        lines_src, lines_tgt = [], []
        tries = 0
        while len(lines_src) < n:
            tries += 1
            if tries > 100 * n + 1000:
                raise ValueError(f"cannot draw {n} distinct {split} sentences from {spec}; enlarge vocab or lengths")
            length = rng.randint(spec.min_len, spec.max_len)
            words = tuple(f"s{rng.randrange(spec.vocab)}" for _ in range(length))
            if words in seen:
                continue
            seen.add(words)
            lines_src.append(" ".join(words))
            lines_tgt.append(" ".join(translate(list(words), mapping)))
        (out_dir / f"{split}.{src}").write_text("\n".join(lines_src) + "\n")
        (out_dir / f"{split}.{tgt}").write_text("\n".join(lines_tgt) + "\n")
        counts[split] = n
    return counts
