#!/usr/bin/env bash
# WMT14 En-De prepared as fairseq's examples/translation/prepare-wmt14en2de.sh does (europarl v7, commoncrawl,
# news-commentary v12 (--icml17: v9); normalize-punctuation, remove-non-printing-char, Moses tokenizer -a; test =
# newstest2014; joint BPE with 40,000 merges; clean-corpus-n 1.5/1..250 on train and valid; fairseq-preprocess
# --joined-dictionary), with sacremoses and subword-nmt instead of the perl scripts (tasks/translation/prepare.py).
# Valid = newstest2013, as the paper (App. D); VALID_FROM=train: every 100th training line, as fairseq's script.
#
#   scripts/prepare_wmt14.sh [OUT] [--icml17]     OUT defaults to ${ADAHESSIAN_DATA:-data}/wmt14_en_de
#
# About 4.5M sentence pairs: hours of CPU for tokenization and BPE (docs/translation.md). Environment:
# WMT14_ORIG=DIR uses already extracted archives; BPE_MERGES (40000), WORKERS (all CPUs), VALID_FROM (newstest2013 | train).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${1:-${ADAHESSIAN_DATA:-data}/wmt14_en_de}
EXTRA=()
if [ "${2:-}" = "--icml17" ]; then EXTRA+=(--icml17); NC=training-parallel-nc-v9.tgz; NCURL=http://statmt.org/wmt14/training-parallel-nc-v9.tgz;
else NC=training-parallel-nc-v12.tgz; NCURL=http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz; fi
WORKERS=${WORKERS:-$(nproc 2>/dev/null || echo 4)}
ORIG=${WMT14_ORIG:-$OUT/orig}
URLS=(
    "http://statmt.org/wmt13/training-parallel-europarl-v7.tgz"
    "http://statmt.org/wmt13/training-parallel-commoncrawl.tgz"
    "$NCURL"
    "http://data.statmt.org/wmt17/translation-task/dev.tgz"
    "http://statmt.org/wmt14/test-full.tgz"
)
mkdir -p "$ORIG"
if [ ! -f "$ORIG/test-full/newstest2014-deen-src.en.sgm" ]; then
    for url in "${URLS[@]}"; do
        f="$ORIG/$(basename "$url")"
        if [ ! -f "$f" ]; then
            echo "downloading $url"
            if command -v curl >/dev/null; then curl -fL --retry 3 -o "$f" "$url"; else wget -O "$f" "$url"; fi
        fi
        tar -xzf "$f" -C "$ORIG"
    done
fi
"$PYTHON" -m tasks.translation.prepare wmt14 --orig "$ORIG" --out "$OUT" --workers "$WORKERS" \
    --bpe-merges "${BPE_MERGES:-40000}" --valid-from "${VALID_FROM:-newstest2013}" "${EXTRA[@]}"
echo "data.root: $OUT/data-bin"
