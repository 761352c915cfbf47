"""Vision datasets: CIFAR-10 and ImageNet from disk in their usual layouts, and a learnable synthetic stand-in.

CIFAR-10 (``data.root``), first match wins:
  1. ``<root>/cifar-10-batches-py``  torchvision's format (what ``CIFAR10(download=True)`` writes)
  2. ``<root>/train/<class>/*`` and ``<root>/test/<class>/*``  an image-folder tree
  3. ``data.download=true``  torchvision downloads the archive into ``<root>`` (needs internet)
ImageNet: ``<root>/train/<wnid>/*`` and ``<root>/val/<wnid>/*`` (torchvision ImageFolder).
Synthetic (``data.source=synthetic``): class-structured images of the real shape; see SyntheticImages.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset
from torchvision import datasets, transforms

# The authors' CIFAR-10 normalisation (SETTINGS.md) and torchvision's ImageNet one.
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class SyntheticImages(Dataset):
    """Images of class c are a smooth class template plus Gaussian noise: learnable, deterministic, any size.

    Labels cycle through the classes; sample i is generated from (seed, i), so the set needs no storage and
    is the same in every process. Templates are drawn at 4x4 and upsampled, so a ConvNet separates the
    classes within a few dozen steps while single pixels stay noisy.
    """

    def __init__(self, size: int, num_classes: int, image_size: int, seed: int, noise: float = 1.0):
        if size < 1 or num_classes < 2:
            raise ValueError(f"synthetic data needs size >= 1 and num_classes >= 2, got {size}, {num_classes}")
        self.size, self.num_classes, self.image_size = size, num_classes, image_size
        self.seed, self.noise = seed, noise
        g = torch.Generator().manual_seed(10_007 + num_classes)  # the same classes for train and val
        coarse = torch.randn(num_classes, 3, 4, 4, generator=g) * 1.5
        self.templates = coarse  # upsampled per item: (num_classes, 3, S, S) would not fit for ImageNet

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = index % self.num_classes
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        template = F.interpolate(self.templates[label : label + 1], size=self.image_size, mode="bilinear",
                                 align_corners=False)[0]
        image = template + self.noise * torch.randn(template.shape, generator=g)
        return image, label


class CIFAR10Files(datasets.CIFAR10):
    """torchvision's CIFAR-10 reader for a copy already on disk: files must exist, their md5 is not required
    (torchvision insists on the official archive's checksums, which a re-packed or partial copy fails)."""

    train_list = [[name, None] for name, _ in datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in datasets.CIFAR10.test_list]
    meta = {**datasets.CIFAR10.meta, "md5": None}


def _cifar_transforms(train: bool):
    base = [transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)]
    if train:
        return transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), *base])
    return transforms.Compose(base)


def _imagenet_transforms(train: bool):
    norm = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        return transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), *norm])
    return transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), *norm])


def _has_class_dirs(path: Path) -> bool:
    return path.is_dir() and any(p.is_dir() for p in path.iterdir())


def cifar10(root: str | Path, download: bool) -> tuple[Dataset, Dataset]:
    root = Path(root)
    if (root / "cifar-10-batches-py").is_dir():
        return (CIFAR10Files(str(root), train=True, transform=_cifar_transforms(True)),
                CIFAR10Files(str(root), train=False, transform=_cifar_transforms(False)))
    if _has_class_dirs(root / "train") and _has_class_dirs(root / "test"):
        return (datasets.ImageFolder(str(root / "train"), transform=_cifar_transforms(True)),
                datasets.ImageFolder(str(root / "test"), transform=_cifar_transforms(False)))
    if download:
        return _download_cifar10(root)
    raise FileNotFoundError(
        f"CIFAR-10 not found: looked for {root}/cifar-10-batches-py (torchvision format) and "
        f"{root}/train/<class>/, {root}/test/<class>/ (image folders). Get it with "
        f"`python scripts/prepare_data.py cifar10 --root {root}` (internet), or set data.download=true, "
        f"or point data.root at an existing copy; data.source=synthetic runs without it."
    )


def _download_cifar10(root: Path) -> tuple[Dataset, Dataset]:
    return (datasets.CIFAR10(str(root), train=True, transform=_cifar_transforms(True), download=True),
            datasets.CIFAR10(str(root), train=False, transform=_cifar_transforms(False), download=True))


def imagenet(root: str | Path) -> tuple[Dataset, Dataset]:
    root = Path(root)
    if not (_has_class_dirs(root / "train") and _has_class_dirs(root / "val")):
        raise FileNotFoundError(
            f"ImageNet not found: looked for {root}/train/<wnid>/ and {root}/val/<wnid>/ (ImageFolder layout). "
            f"ImageNet needs a licence: download ILSVRC2012 from image-net.org, then lay it out with "
            f"`python scripts/prepare_data.py imagenet --root {root} --archives DIR`; data.source=synthetic "
            f"runs without it."
        )
    return (datasets.ImageFolder(str(root / "train"), transform=_imagenet_transforms(True)),
            datasets.ImageFolder(str(root / "val"), transform=_imagenet_transforms(False)))


def class_balanced_subset(dataset: Dataset, per_class: int) -> Subset:
    """The first ``per_class`` images of every class, in the dataset's own order: the same images on every run and
    seed, and in both CIFAR-10 layouts (the image folders keep the batches' order within a class)."""
    targets = torch.as_tensor(dataset.targets)
    counts = torch.bincount(targets)
    if per_class < 1 or per_class > int(counts.min()):
        raise ValueError(f"data.train_per_class={per_class} is not allowed; it must be in 1..{int(counts.min())} "
                         f"(the smallest class of this training set)")
    keep = [i for c in range(len(counts)) for i in torch.nonzero(targets == c).flatten()[:per_class].tolist()]
    return Subset(dataset, sorted(keep))


def build_datasets(task_cfg, data_cfg, seed: int) -> tuple[Dataset, Dataset]:
    """(train, test) sets; ``data.train_per_class`` (real data only) trains on a fixed class-balanced subset."""
    train, test = _datasets(task_cfg, data_cfg, seed)
    per_class = data_cfg.get("train_per_class")
    if data_cfg.source == "real" and per_class is not None:
        train = class_balanced_subset(train, int(per_class))
    return train, test


def _datasets(task_cfg, data_cfg, seed: int) -> tuple[Dataset, Dataset]:
    if data_cfg.source == "synthetic":
        s = data_cfg.synthetic
        return (SyntheticImages(s.train_size, s.num_classes, s.image_size, seed=seed, noise=s.noise),
                SyntheticImages(s.val_size, s.num_classes, s.image_size, seed=seed + 7_777_777, noise=s.noise))
    if task_cfg.dataset == "cifar10":
        return cifar10(data_cfg.root, data_cfg.download)
    if task_cfg.dataset == "imagenet":
        return imagenet(data_cfg.root)
    raise ValueError(f"task.dataset={task_cfg.dataset!r} is not allowed; choose cifar10 or imagenet")
