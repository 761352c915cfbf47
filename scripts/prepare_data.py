"""Fetch or lay out the vision datasets where the configs look for them (``${paths.data_dir}/<name>``).

    python scripts/prepare_data.py cifar10  [--root data/cifar10]     # downloads via torchvision (internet)
    python scripts/prepare_data.py imagenet --archives DIR [--root data/imagenet]
        # DIR holds ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz
        # (from image-net.org, licence required); torchvision unpacks them into train/<wnid>/ and val/<wnid>/.

Translation data: scripts/prepare_iwslt14.sh and scripts/prepare_wmt14.sh.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DATA_DIR = Path(os.environ.get("ADAHESSIAN_DATA", "data"))


def cifar10(root: Path) -> None:
    from torchvision.datasets import CIFAR10

    for train in (True, False):
        ds = CIFAR10(str(root), train=train, download=True)
        print(f"CIFAR-10 {'train' if train else 'test'}: {len(ds)} images in {root}/cifar-10-batches-py")


def imagenet(root: Path, archives: Path) -> None:
    from torchvision.datasets import ImageNet

    root.mkdir(parents=True, exist_ok=True)
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"):
        src = archives / name
        if not src.exists():
            raise SystemExit(f"error: {src} not found; download it from image-net.org (licence required)")
        if not (root / name).exists():
            os.symlink(src.resolve(), root / name)  # torchvision expects the archives inside root
    for split in ("train", "val"):
        ds = ImageNet(str(root), split=split)  # extracts into root/<split>/<wnid>/ on first use
        print(f"ImageNet {split}: {len(ds)} images in {root}/{split}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=["cifar10", "imagenet"])
    p.add_argument("--root", type=Path, help="target directory (default: $ADAHESSIAN_DATA/<dataset> or data/<dataset>)")
    p.add_argument("--archives", type=Path, help="imagenet: directory with the ILSVRC2012 archives")
    a = p.parse_args()
    root = a.root or DATA_DIR / a.dataset
    if a.dataset == "cifar10":
        cifar10(root)
    else:
        if a.archives is None:
            p.error("imagenet needs --archives DIR (the ILSVRC2012 tar files)")
        imagenet(root, a.archives)


if __name__ == "__main__":
    main()
