"""Put Wikitext-103 where ``task=wikitext103_transformer`` looks for it (``data.root``).

    python -m scripts.prepare_wikitext103 [--root data/wikitext-103]              # download and unpack (internet)
    python -m scripts.prepare_wikitext103 [--root data/wikitext-103] --from DIR   # copy wiki.*.tokens from DIR
    python -m scripts.prepare_wikitext103 [--root data/wikitext-103] --check      # only check the files in root

The files are ``wiki.train.tokens``, ``wiki.valid.tokens``, ``wiki.test.tokens`` of ``wikitext-103-v1.zip`` (the
word-level, tokenized release of Merity et al. 2016; about 180 MB zipped, 540 MB unpacked). The check reads them as
training does and compares the token counts (without ``<eos>``) with the published 103,227,021 / 217,646 / 245,569
and the vocabulary (with ``<eos>``) with the standard 267,735; a different copy (a subset, the raw release) is
reported, not rejected.
Reading the training split takes a minute or two.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from scripts.corpus_cli import corpus_main
from tasks.language_model.data import EOS
from tasks.language_model.wikitext import WIKITEXT103_FILES, load_wikitext103

# The release's current home (Merity's site); the original S3 address is tried second.
URLS = ("https://wikitext.smerity.com/wikitext-103-v1.zip",
        "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip")
ARCHIVE_DIR = "wikitext-103"  # the zip's top-level directory
TOKENS = {"train": 103_227_021, "valid": 217_646, "test": 245_569}  # Merity et al. 2016, Table 1 (no <eos>)
VOCAB = 267_735


def check(root: Path) -> bool:
    """Print what is in ``root`` and whether it is the standard Wikitext-103; True when it is."""
    vocab, ids = load_wikitext103(root)  # raises FileNotFoundError with the paths it looked for
    eos = vocab.stoi[EOS]
    words = {split: int((t != eos).sum()) for split, t in ids.items()}
    standard = len(vocab) == VOCAB
    for split, name in WIKITEXT103_FILES.items():
        same = words[split] == TOKENS[split]
        standard &= same
        print(f"  {name}: {words[split]:,} tokens + {ids[split].numel() - words[split]:,} <eos> "
              f"({'the published count' if same else f'published: {TOKENS[split]:,}'})")
    print(f"  vocabulary: {len(vocab):,} words with <eos> (standard: {VOCAB:,}, Transformer-XL's n_token)")
    print("Wikitext-103 is the standard version" if standard else
          "warning: this is not the standard Wikitext-103 (a subset or another version): results are not comparable")
    return standard


def copy_from(src: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name in WIKITEXT103_FILES.values():
        if not (src / name).is_file():
            raise SystemExit(f"error: {src / name} not found")
        shutil.copyfile(src / name, root / name)


def download(root: Path, urls: tuple[str, ...] = URLS) -> None:
    """Fetch the zip (first address that answers) and unpack the three token files into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "wikitext-103-v1.zip"
        errors = []
        for url in urls:
            try:
                print(f"downloading {url}")
                urllib.request.urlretrieve(url, archive)
                break
            except OSError as e:  # URLError and HTTPError are OSErrors
                errors.append(f"{url}: {e}")
        else:
            raise SystemExit("error: could not download Wikitext-103 (" + "; ".join(errors) + "); download "
                             "wikitext-103-v1.zip elsewhere, unzip it and use --from DIR")
        with zipfile.ZipFile(archive) as z:
            names = set(z.namelist())
            for name in WIKITEXT103_FILES.values():
                member = f"{ARCHIVE_DIR}/{name}"
                if member not in names:
                    raise SystemExit(f"error: the archive has no {member}")
                with z.open(member) as f, open(root / name, "wb") as out:
                    shutil.copyfileobj(f, out)


def main(argv: list[str] | None = None) -> int:
    return corpus_main(argv, doc=__doc__, folder="wikitext-103", task="wikitext103_transformer", download=download,
                       copy_from=copy_from, check=check)


if __name__ == "__main__":
    sys.exit(main())
