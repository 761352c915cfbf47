"""CIFAR-10 in one small file for a machine that can take only a few tens of MB with the code (scripts/gpu_repro.sh).

    python -m scripts.pack_cifar pack   --root data/cifar10 --out data/cifar10_pack.npz [--quality 75]
    python -m scripts.pack_cifar unpack --pack data/cifar10_pack.npz --out /tmp/cifar10

``pack`` reads CIFAR-10 in either layout the vision loader reads (``<root>/cifar-10-batches-py``, torchvision's
pickles, or ``<root>/{train,test}/<class>/*`` image folders) and writes every image as a JPEG: files that are JPEGs
already are stored byte for byte (not re-encoded), anything else (the pickles' lossless pixels, PNG folders) is
encoded once with Pillow at ``--quality``. 60,000 JPEGs of 32x32 pixels share one header (quantisation and Huffman
tables, ~600 of their ~900 bytes), so each header is stored once and the images as their remaining bytes: ~21 MB for
all of CIFAR-10 at quality 75, against 52 MB of JPEG files and 184 MB of raw pixels. The file is a plain ``.npz``
(no pickle); its SHA-256 goes to ``<out>.sha256`` in ``sha256sum`` format, so the receiving side checks it with
``sha256sum -c``.

``unpack`` decodes it into torchvision's ``cifar-10-batches-py`` layout (``data_batch_1..5``, ``test_batch``,
``batches.meta``) under ``--out``, which ``data.root=<out>`` reads. Train images keep their order within each
class (the order of the original batches when packed from either layout), classes are interleaved in a fixed
shuffled order.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import sys
from pathlib import Path

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SOS = b"\xff\xda"  # JPEG start-of-scan marker: everything before it is the header (tables, frame)
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")


# -- reading the sources ------------------------------------------------------------------------------------
def _encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _from_pickles(batches: Path, quality: int) -> dict[str, tuple[list[bytes], list[int]]]:
    out = {}
    for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        jpegs, labels = [], []
        for name in names:
            with open(batches / name, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            pixels = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            jpegs += [_encode_jpeg(p, quality) for p in pixels]
            labels += list(entry.get("labels", entry.get("fine_labels")))
        out[split] = (jpegs, labels)
    return out


def _from_folders(root: Path, quality: int) -> dict[str, tuple[list[bytes], list[int]]]:
    from PIL import Image

    out = {}
    for split in ("train", "test"):
        classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
        if tuple(classes) != tuple(sorted(CLASSES)):
            raise ValueError(f"{root / split}: class folders {classes} are not CIFAR-10's {sorted(CLASSES)}")
        jpegs, labels = [], []
        for name in CLASSES:  # label = CIFAR-10's class index, whatever the folders' sort order
            files = sorted(f for f in (root / split / name).iterdir() if f.suffix.lower() in IMAGE_EXT)
            for f in files:
                data = f.read_bytes()
                if f.suffix.lower() not in (".jpg", ".jpeg"):
                    data = _encode_jpeg(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), quality)
                jpegs.append(data)
                labels.append(CLASSES.index(name))
        out[split] = (jpegs, labels)
    return out


def read_cifar(root: str | Path, quality: int = 75) -> dict[str, tuple[list[bytes], list[int]]]:
    """{"train": (jpeg bytes, labels), "test": (...)} from either layout the vision loader reads."""
    root = Path(root)
    if (root / "cifar-10-batches-py").is_dir():
        return _from_pickles(root / "cifar-10-batches-py", quality)
    if (root / "train").is_dir() and (root / "test").is_dir():
        return _from_folders(root, quality)
    raise FileNotFoundError(f"CIFAR-10 not found: looked for {root}/cifar-10-batches-py and {root}/train/<class>/, "
                            f"{root}/test/<class>/ (get it with `python scripts/prepare_data.py cifar10`)")


# -- the pack -----------------------------------------------------------------------------------------------
def pack(root: str | Path, out: str | Path, quality: int = 75) -> str:
    """Write the pack and ``<out>.sha256``; returns the SHA-256."""
    arrays: dict[str, np.ndarray] = {"classes": np.array(CLASSES)}
    headers: list[bytes] = []
    for split, (jpegs, labels) in read_cifar(root, quality).items():
        idx, tails = [], []
        for data in jpegs:
            cut = data.find(SOS)
            if cut < 0:
                raise ValueError(f"{split}: an image is not a baseline JPEG (no start-of-scan marker)")
            head = data[:cut]
            if head not in headers:
                headers.append(head)
            idx.append(headers.index(head))
            tails.append(data[cut:])
        lengths = np.array([len(t) for t in tails], dtype=np.int64)
        arrays[f"{split}_header"] = np.array(idx, dtype=np.uint16)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum(lengths)])
        arrays[f"{split}_bytes"] = np.frombuffer(b"".join(tails), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.array(labels, dtype=np.uint8)
    arrays["headers"] = np.frombuffer(b"".join(headers), dtype=np.uint8)
    arrays["header_offsets"] = np.concatenate([[0], np.cumsum([len(h) for h in headers])]).astype(np.int64)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:  # np.savez would append .npz to a name without it
        np.savez(f, **arrays)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    Path(f"{out}.sha256").write_text(f"{digest}  {out.name}\n")
    return digest


def decode(pack_path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 32, 32, 3), uint8 labels (N,)) of ``split``."""
    from PIL import Image

    z = np.load(pack_path, allow_pickle=False)
    hb, ho = z["headers"].tobytes(), z["header_offsets"]
    headers = [hb[ho[i]:ho[i + 1]] for i in range(len(ho) - 1)]
    data, offsets, idx = z[f"{split}_bytes"].tobytes(), z[f"{split}_offsets"], z[f"{split}_header"]
    images = np.stack([np.asarray(Image.open(io.BytesIO(headers[h] + data[offsets[i]:offsets[i + 1]])).convert("RGB"))
                       for i, h in enumerate(idx)])
    return images, z[f"{split}_labels"]


def unpack(pack_path: str | Path, out: str | Path) -> Path:
    """torchvision's ``cifar-10-batches-py`` under ``out``; returns that folder."""
    dest = Path(out) / "cifar-10-batches-py"
    dest.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        images, labels = decode(pack_path, split)
        order = np.random.default_rng(0).permutation(len(labels))  # classes interleaved, as in the original
        images, labels = images[order], labels[order]
        flat = images.transpose(0, 3, 1, 2).reshape(len(labels), -1)  # torchvision: rows of CHW bytes
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        for name, part in zip(names, np.array_split(np.arange(len(labels)), len(names))):
            with open(dest / name, "wb") as f:
                pickle.dump({"data": flat[part], "labels": labels[part].tolist(), "batch_label": name}, f)
    with open(dest / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CLASSES), "num_vis": 3072}, f)
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="CIFAR-10 folder -> one .npz of JPEG bytes (+ .sha256)")
    p.add_argument("--root", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--quality", type=int, default=75, help="JPEG quality for images not already JPEG (1-95)")
    u = sub.add_parser("unpack", help=".npz -> <out>/cifar-10-batches-py")
    u.add_argument("--pack", required=True)
    u.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        if not 1 <= a.quality <= 95:
            print(f"error: --quality={a.quality} is not allowed; use 1..95 (Pillow's useful range)", file=sys.stderr)
            return 2
        digest = pack(a.root, a.out, a.quality)
        print(f"{a.out}: {Path(a.out).stat().st_size / 2**20:.1f} MiB, sha256 {digest}")
    else:
        print(unpack(a.pack, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
