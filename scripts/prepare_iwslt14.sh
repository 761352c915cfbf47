#!/usr/bin/env bash
# IWSLT14 De-En prepared as fairseq's examples/translation/prepare-iwslt14.sh does (Moses tokenizer, lowercase,
# clean-corpus-n 1.5/1..175, valid = every 23rd training line, test = dev2010+TEDX.dev2012+tst2010-2012, joint BPE
# with 10,000 merges, fairseq-preprocess --joined-dictionary), with sacremoses and subword-nmt instead of the perl
# scripts (tasks/translation/prepare.py).
#
#   scripts/prepare_iwslt14.sh [OUT]        OUT defaults to ${ADAHESSIAN_DATA:-data}/iwslt14
#
# Writes OUT/data-bin (the config's data.root), OUT/tokenized (BPE text + code), OUT/raw/test.{de,en} (sacreBLEU
# references). Environment: IWSLT14_ORIG=DIR uses an already extracted de-en.tgz (DIR/de-en/...) instead of
# downloading; IWSLT14_URL overrides the download; BPE_MERGES (10000), WORKERS (all CPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${1:-${ADAHESSIAN_DATA:-data}/iwslt14}
URL=${IWSLT14_URL:-http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz}
WORKERS=${WORKERS:-$(nproc 2>/dev/null || echo 4)}
ORIG=${IWSLT14_ORIG:-$OUT/orig}

if [ ! -f "$ORIG/de-en/train.tags.de-en.de" ]; then
    mkdir -p "$ORIG"
    echo "downloading $URL"
    if command -v curl >/dev/null; then curl -fL --retry 3 -o "$ORIG/de-en.tgz" "$URL";
    else wget -O "$ORIG/de-en.tgz" "$URL"; fi
    tar -xzf "$ORIG/de-en.tgz" -C "$ORIG"
fi
"$PYTHON" -m tasks.translation.prepare iwslt14 --orig "$ORIG" --out "$OUT" --workers "$WORKERS" \
    --bpe-merges "${BPE_MERGES:-10000}"
echo "data.root: $OUT/data-bin"
