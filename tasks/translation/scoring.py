"""Reading fairseq's output and scoring translations the way the paper did.

- ``bleu`` (the record's metric): tokenized BLEU of the BPE-removed hypotheses against the tokenized references,
  as fairseq-generate's ``BLEU4`` line / multi-bleu.perl: no further tokenization; case-insensitive for IWSLT14
  (its data is lowercased anyway), case-sensitive for WMT14 with fairseq's compound splitting
  (``compound_split_bleu.sh``: ``a-b`` -> ``a ##AT##-##AT## b``) when ``compound_split`` is set.
- ``sacrebleu``: detokenized (sacremoses) hypotheses scored by sacreBLEU (13a) against the raw references when a
  file of them is given, else against the detokenized tokenized references (then not comparable across papers).
- ``bleu_fairseq``: the BLEU4 line fairseq-generate printed itself (a cross-check of ``bleu``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_LOG = re.compile(r"\|\s*(INFO|WARNING|ERROR)\s*\|\s*([\w.]+)\s*\|\s*(.*)$")
_BLEU_LINE = re.compile(r"^Generate (\S+) with beam=(\d+): BLEU4 = ([-\d.]+|nan|inf)")
_LOADED = re.compile(r"[Ll]oaded checkpoint (\S+) \(epoch (\d+) @ (\d+) updates\)")


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def parse_log_line(line: str, valid_subset: str = "valid") -> tuple[str, dict[str, Any]] | None:
    """A fairseq ``--log-format json`` line -> (tag, stats) for tags train_inner / train / valid.

    fairseq tags a validation line, and prefixes its keys, with the subset's name (``--valid-subset test``:
    ``| test | {"test_loss": ...}``): the line of ``valid_subset`` is returned as ``("valid", {"valid_loss": ...})``.
    Also ``("loaded", {"epoch", "updates"})`` for the checkpoint a resumed run starts from.
    """
    m = _LOG.search(line)
    if not m:
        return None
    tag, msg = m.group(2), m.group(3).strip()
    if tag in ("train_inner", "train", valid_subset) and msg.startswith("{"):
        try:
            stats = json.loads(msg)
        except json.JSONDecodeError:
            return None
        if tag == valid_subset and tag not in ("train_inner", "train"):
            prefix = f"{valid_subset}_"
            return "valid", {("valid_" + k[len(prefix):] if k.startswith(prefix) else k): v for k, v in stats.items()}
        return tag, stats
    if lm := _LOADED.search(msg):
        return "loaded", {"path": lm.group(1), "epoch": int(lm.group(2)), "updates": int(lm.group(3))}
    return None


@dataclass
class Generation:
    hyps: list[str] = field(default_factory=list)   # BPE removed, tokenized, in sample-id order
    refs: list[str] = field(default_factory=list)
    srcs: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)     # sample ids = line numbers of the generated subset
    fairseq_bleu: float | None = None
    subset: str | None = None
    beam: int | None = None


def parse_generate(text: str) -> Generation:
    """fairseq-generate's stdout: S-/T-/H- lines (any order) and the final ``Generate ... BLEU4 = x`` line."""
    s, t, h = {}, {}, {}
    gen = Generation()
    for line in text.splitlines():
        if line.startswith(("S-", "T-", "H-")):
            parts = line.split("\t")
            kind, idx = parts[0].split("-", 1)
            if not idx.isdigit():
                continue
            if kind == "H":
                h[int(idx)] = parts[2] if len(parts) > 2 else ""
            else:
                (s if kind == "S" else t)[int(idx)] = parts[1] if len(parts) > 1 else ""
        elif m := _BLEU_LINE.match(line):
            gen.subset, gen.beam, gen.fairseq_bleu = m.group(1), int(m.group(2)), float(m.group(3))
    ids = sorted(h)
    if set(ids) != set(t):
        raise ValueError(f"generation output has {len(h)} hypotheses but {len(t)} references")
    gen.hyps = [h[i] for i in ids]
    gen.refs = [t[i] for i in ids]
    gen.srcs = [s.get(i, "") for i in ids]
    gen.ids = ids
    return gen


def compound_split(line: str) -> str:
    """fairseq's scripts/compound_split_bleu.sh: ``(\\S)-(\\S)`` -> ``\\1 ##AT##-##AT## \\2``."""
    return re.sub(r"(\S)-(\S)", r"\1 ##AT##-##AT## \2", line)  # one pass, as the perl one-liner


def tokenized_bleu(hyps: list[str], refs: list[str], *, lowercase: bool, split_compounds: bool = False):
    """Corpus BLEU on already tokenized text (multi-bleu.perl / fairseq's scorer). Returns sacrebleu's BLEUScore."""
    from sacrebleu.metrics import BLEU

    if split_compounds:
        hyps = [compound_split(x) for x in hyps]
        refs = [compound_split(x) for x in refs]
    # No smoothing: multi-bleu.perl and fairseq's scorer give 0 when any n-gram precision is 0.
    return BLEU(tokenize="none", lowercase=lowercase, force=True, smooth_method="none").corpus_score(hyps, [refs])


def detokenize(lines: list[str], lang: str) -> list[str]:
    from sacremoses import MosesDetokenizer

    md = MosesDetokenizer(lang=lang)
    return [md.detokenize(x.split()) for x in lines]


def sacre_bleu(hyps: list[str], refs: list[str], *, lang: str, lowercase: bool, tokenize: str = "13a",
               raw_refs: list[str] | None = None) -> tuple[Any, Any, str]:
    """(score, BLEU metric object, which reference) for detokenized hypotheses."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize=tokenize, lowercase=lowercase)
    detok = detokenize(hyps, lang)
    if raw_refs is not None:
        return metric.corpus_score(detok, [raw_refs]), metric, "raw"
    return metric.corpus_score(detok, [detokenize(refs, lang)]), metric, "detokenized-tokenized"


def score_generation(gen: Generation, *, tgt_lang: str, lowercase: bool, split_compounds: bool,
                     sacrebleu_tokenize: str = "13a", raw_refs_path: str | Path | None = None) -> dict[str, Any]:
    """All scores of one generation, as a flat dict for the run record (BLEU in 0..100)."""
    tok = tokenized_bleu(gen.hyps, gen.refs, lowercase=lowercase, split_compounds=split_compounds)
    raw_refs = None
    if raw_refs_path is not None and Path(raw_refs_path).is_file():
        lines = Path(raw_refs_path).read_text(encoding="utf-8").splitlines()
        if max(gen.ids, default=-1) < len(lines):
            raw_refs = [lines[i] for i in gen.ids]
    sb, metric, ref_kind = sacre_bleu(gen.hyps, gen.refs, lang=tgt_lang, lowercase=lowercase,
                                      tokenize=sacrebleu_tokenize, raw_refs=raw_refs)
    out = {
        "bleu": round(tok.score, 2),
        "bleu_precisions": [round(p, 1) for p in tok.precisions],
        "bleu_bp": round(tok.bp, 3),
        "hyp_len": tok.sys_len,
        "ref_len": tok.ref_len,
        "sacrebleu": round(sb.score, 2),
        "sacrebleu_signature": str(metric.get_signature()),
        "sacrebleu_reference": ref_kind,
        "bleu_fairseq": gen.fairseq_bleu,
        "n_sentences": len(gen.hyps),
        "bleu_lowercase": lowercase,
        "bleu_compound_split": split_compounds,
    }
    if not math.isfinite(out["bleu"]):
        out["bleu"] = None
    return out
