"""Put Mikolov's word-level Penn Treebank where ``task=ptb_transformer`` looks for it (``data.root``).

    python scripts/prepare_ptb.py [--root data/ptb]              # download simple-examples.tgz (internet)
    python scripts/prepare_ptb.py [--root data/ptb] --from DIR   # copy ptb.{train,valid,test}.txt from DIR
    python scripts/prepare_ptb.py [--root data/ptb] --check      # only check the files already in root

The files are ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt`` of Mikolov's "simple-examples" archive
(lowercased, 10k vocabulary, ``<unk>``, numbers as ``N``). Every copy is checked against the standard files' md5
and token counts; a different copy (a subset, another preprocessing) is reported, not rejected.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from scripts.corpus_cli import corpus_main
from tasks.language_model.data import PTB_FILES, load_ptb  # noqa: E402

URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
# The standard files: md5 and tokens with one <eos> per line (train 929,589 / valid 73,760 / test 82,430).
MD5 = {"train": "f26c4b92c5fdc7b3f8c7cdcb991d8420", "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
       "test": "8b80168b89c18661a38ef683c0dc3721"}
TOKENS = {"train": 929_589, "valid": 73_760, "test": 82_430}
VOCAB = 10_000


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def check(root: Path) -> bool:
    """Print what is in ``root`` and whether it is the standard PTB; True when it is."""
    vocab, ids = load_ptb(root)  # raises FileNotFoundError with the paths it looked for
    standard = len(vocab) == VOCAB
    for split, name in PTB_FILES.items():
        same = md5(root / name) == MD5[split]
        standard &= same and ids[split].numel() == TOKENS[split]
        note = "standard md5" if same else "md5 differs from the standard file"
        print(f"  {name}: {ids[split].numel():,} tokens ({note})")
    print(f"  vocabulary: {len(vocab):,} words (standard: {VOCAB:,})")
    print("PTB is the standard version" if standard else
          "warning: this is not the standard PTB (a subset or another version): results are not comparable")
    return standard


def copy_from(src: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name in PTB_FILES.values():
        if not (src / name).is_file():
            raise SystemExit(f"error: {src / name} not found")
        shutil.copyfile(src / name, root / name)


def download(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "simple-examples.tgz"
        print(f"downloading {URL}")
        urllib.request.urlretrieve(URL, archive)
        with tarfile.open(archive) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            for name in PTB_FILES.values():
                member = members.get(f"simple-examples/data/{name}")
                if member is None:
                    raise SystemExit(f"error: the archive has no simple-examples/data/{name}")
                with tar.extractfile(member) as f, open(root / name, "wb") as out:
                    shutil.copyfileobj(f, out)


def main(argv: list[str] | None = None) -> int:
    return corpus_main(argv, doc=__doc__, folder="ptb", task="ptb_transformer", download=download,
                       copy_from=copy_from, check=check)


if __name__ == "__main__":
    sys.exit(main())
