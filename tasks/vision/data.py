"""Vision datasets: CIFAR-10 and ImageNet from disk in their usual layouts, and a learnable synthetic stand-in.

CIFAR-10 (``data.root``), first match wins:
  1. ``<root>/cifar-10-batches-py``  torchvision's format (what ``CIFAR10(download=True)`` writes)
  2. ``<root>/train/<class>/*`` and ``<root>/test/<class>/*``  an image-folder tree
  3. ``data.download=true``  torchvision downloads the archive into ``<root>`` (needs internet)
ImageNet: ``<root>/train/<wnid>/*`` and ``<root>/val/<wnid>/*`` (torchvision ImageFolder).
Synthetic (``data.source=synthetic``): class-structured images of the real shape; see SyntheticImages.

Bad data stops the run with one line naming the file, before training (:func:`check`, called by the family's
``check_data`` before a run record exists, and again by the loaders): a missing or truncated CIFAR pickle, rows or
labels of the wrong shape, train and test image folders whose class lists differ (a missing class folder would
shift every label by one). Image files: CIFAR's folders are small (60,000 files of 32x32), so every image is
decoded once up front; ImageNet's 1.3M files are not (that alone would take about an hour), so there only the
class lists are checked up front, and an image that fails to decode during training stops the run naming it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets, transforms
from torchvision.datasets.vision import VisionDataset

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


CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(name for name, _ in datasets.CIFAR10.train_list)  # data_batch_1 .. data_batch_5
CIFAR_TEST = tuple(name for name, _ in datasets.CIFAR10.test_list)    # test_batch
CIFAR_META = datasets.CIFAR10.meta["filename"]                        # batches.meta
CIFAR_PIXELS = 3 * 32 * 32


def cifar_get_it(root: Path) -> str:
    return (f"Get CIFAR-10 with `python scripts/prepare_data.py cifar10 --root {root}` (internet) or point "
            f"data.root at a complete copy; data.source=synthetic runs without it.")


def check_cifar_files(root: str | Path) -> None:
    """Cheap check of ``<root>/cifar-10-batches-py``: every file present and ending as a pickle does (a truncated
    copy does not). Raises FileNotFoundError naming the missing files, ValueError naming a broken one."""
    d = Path(root) / CIFAR_DIR
    missing = [n for n in (*CIFAR_TRAIN, *CIFAR_TEST, CIFAR_META) if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 in {d} is incomplete: missing {', '.join(missing)}. {cifar_get_it(root)}")
    for n in (*CIFAR_TRAIN, *CIFAR_TEST, CIFAR_META):
        with open(d / n, "rb") as f:
            f.seek(0, 2)
            if f.tell() == 0:
                raise ValueError(f"{d / n} is empty (not a CIFAR-10 pickle). {cifar_get_it(root)}")
            f.seek(-1, 2)
            if f.read(1) != pickle.STOP:
                raise ValueError(f"{d / n} is truncated or not a pickle (no end mark). {cifar_get_it(root)}")


def _unpickle(path: Path, root: Path) -> dict:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as e:  # truncated or garbage bytes raise many types (UnpicklingError, EOFError, ...)
        raise ValueError(f"{path} is not a readable CIFAR-10 pickle ({type(e).__name__}: {e}). "
                         f"{cifar_get_it(root)}") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{path} holds a {type(entry).__name__}, not a CIFAR-10 dict. {cifar_get_it(root)}")
    return entry


def read_cifar_batch(path: Path, root: Path) -> tuple[np.ndarray, list[int]]:
    """(uint8 rows (n, 3072), labels) of one CIFAR-10 batch file, checked: ValueError naming the file."""
    entry = _unpickle(path, root)
    data, labels = entry.get("data"), entry.get("labels", entry.get("fine_labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' is {what}; CIFAR-10 rows are uint8 (n, {CIFAR_PIXELS})")
    if labels is None or len(labels) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {'no' if labels is None else len(labels)} labels")
    labels = [int(y) for y in labels]
    if labels and not 0 <= min(labels) <= max(labels) < 10:
        raise ValueError(f"{path}: labels span {min(labels)}..{max(labels)}; CIFAR-10 has classes 0..9")
    return data, labels


class CIFAR10Files(datasets.CIFAR10):
    """CIFAR-10 from a copy already on disk (torchvision's pickles), every file checked as it is read.

    torchvision's reader insists on the official archive's md5 sums (a re-packed or partial copy fails), says
    "use download=True" for any missing or broken file and does not name it; this one names the file. Items are
    served by torchvision's ``CIFAR10.__getitem__``.
    """

    def __init__(self, root: str, train: bool = True, transform=None, target_transform=None):
        VisionDataset.__init__(self, root, transform=transform, target_transform=target_transform)
        self.train = train
        check_cifar_files(root)
        d = Path(root) / CIFAR_DIR
        rows, self.targets = [], []
        for name in CIFAR_TRAIN if train else CIFAR_TEST:
            data, labels = read_cifar_batch(d / name, Path(root))
            rows.append(data)
            self.targets.extend(labels)
        self.data = np.vstack(rows).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # HWC, as torchvision
        meta = _unpickle(d / CIFAR_META, Path(root))
        self.classes = meta.get("label_names")
        if not isinstance(self.classes, list) or len(self.classes) != 10:
            raise ValueError(f"{d / CIFAR_META}: 'label_names' is {self.classes!r}; CIFAR-10 names 10 classes")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


# -- image folders ----------------------------------------------------------------------------------------------
def class_folders(path: Path) -> list[str]:
    """Sorted class folder names, as ImageFolder assigns labels (label i = i-th name)."""
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def check_same_classes(train_dir: Path, eval_dir: Path) -> None:
    """Train and evaluation folders must name the same classes: labels are indices in the sorted list, so one
    folder missing on one side would shift every label after it."""
    a, b = class_folders(train_dir), class_folders(eval_dir)
    if a != b:
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        parts = [f"{len(only_a)} only in {train_dir}: {', '.join(only_a[:5])}{' ...' if len(only_a) > 5 else ''}"
                 if only_a else "", f"{len(only_b)} only in {eval_dir}: {', '.join(only_b[:5])}"
                 f"{' ...' if len(only_b) > 5 else ''}" if only_b else ""]
        raise ValueError(f"class folders differ ({'; '.join(p for p in parts if p)}); labels would not match "
                         f"between the splits: add the missing class folders or remove the extra ones")


def check_no_empty_class(split_dir: Path) -> None:
    """Every class folder holds at least one image (ImageFolder would stop at load time; this names them all)."""
    import os

    def has_image(d: Path) -> bool:
        with os.scandir(d) as it:
            return any(e.name.lower().endswith(datasets.folder.IMG_EXTENSIONS) for e in it)

    empty = [c for c in class_folders(split_dir) if not has_image(split_dir / c)]
    if empty:
        raise ValueError(f"{split_dir}: class folders without images: {', '.join(empty[:5])}"
                         f"{' ...' if len(empty) > 5 else ''}; every class needs images in every split")


def image_loader(path: str) -> Image.Image:
    """torchvision's PIL loader, naming the file when it cannot be decoded (PIL's error does not)."""
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except OSError as e:  # truncated or not an image (PIL.UnidentifiedImageError is an OSError too)
        raise ValueError(f"{path}: cannot decode this image ({e})") from None


def _decode(path: str) -> None:
    try:
        with Image.open(path) as im:
            im.load()
    except OSError as e:  # truncated or not an image (PIL.UnidentifiedImageError is an OSError too)
        raise ValueError(f"{path}: cannot decode this image ({e})") from None


def decode_all(folder: Path) -> int:
    """Decode every image under ``folder`` (ImageFolder's extensions), naming the first that fails; the count.
    Threads: PIL decodes without the GIL (the 60,000 CIFAR JPEGs took 17-19 s on a busy 2-core machine)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
                   if f.lower().endswith(datasets.folder.IMG_EXTENSIONS))
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for _ in pool.map(_decode, paths, chunksize=256):
            pass
    return len(paths)


def image_folder(path: Path, transform) -> datasets.ImageFolder:
    return datasets.ImageFolder(str(path), transform=transform, loader=image_loader)


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


def cifar10_layout(root: Path) -> str | None:
    """Which of the on-disk layouts ``root`` holds: "pickles", "folders" or None."""
    if (root / CIFAR_DIR).is_dir():
        return "pickles"
    if _has_class_dirs(root / "train") and _has_class_dirs(root / "test"):
        return "folders"
    return None


def cifar10_missing(root: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"CIFAR-10 not found: looked for {root}/{CIFAR_DIR} (torchvision format) and "
        f"{root}/train/<class>/, {root}/test/<class>/ (image folders). Get it with "
        f"`python scripts/prepare_data.py cifar10 --root {root}` (internet), or set data.download=true, "
        f"or point data.root at an existing copy; data.source=synthetic runs without it."
    )


def cifar10(root: str | Path, download: bool) -> tuple[Dataset, Dataset]:
    root = Path(root)
    layout = cifar10_layout(root)
    if layout == "pickles":
        return (CIFAR10Files(str(root), train=True, transform=_cifar_transforms(True)),
                CIFAR10Files(str(root), train=False, transform=_cifar_transforms(False)))
    if layout == "folders":
        check_same_classes(root / "train", root / "test")
        return (image_folder(root / "train", _cifar_transforms(True)),
                image_folder(root / "test", _cifar_transforms(False)))
    if download:
        return _download_cifar10(root)
    raise cifar10_missing(root)


def _download_cifar10(root: Path) -> tuple[Dataset, Dataset]:
    return (datasets.CIFAR10(str(root), train=True, transform=_cifar_transforms(True), download=True),
            datasets.CIFAR10(str(root), train=False, transform=_cifar_transforms(False), download=True))


def imagenet_missing(root: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"ImageNet not found: looked for {root}/train/<wnid>/ and {root}/val/<wnid>/ (ImageFolder layout). "
        f"ImageNet needs a licence: download ILSVRC2012 from image-net.org, then lay it out with "
        f"`python scripts/prepare_data.py imagenet --root {root} --archives DIR`; data.source=synthetic "
        f"runs without it."
    )


def imagenet(root: str | Path) -> tuple[Dataset, Dataset]:
    root = Path(root)
    if not (_has_class_dirs(root / "train") and _has_class_dirs(root / "val")):
        raise imagenet_missing(root)
    check_same_classes(root / "train", root / "val")
    return (image_folder(root / "train", _imagenet_transforms(True)),
            image_folder(root / "val", _imagenet_transforms(False)))


def check(task_cfg, data_cfg) -> None:
    """The data a run would read is present and consistent (see the module docstring for how deep each check goes).

    FileNotFoundError: missing (says where it looked and how to get it); ValueError: broken, naming the file.
    ``data.download=true`` with no CIFAR copy on disk passes: the loader downloads it.
    """
    if data_cfg.source == "synthetic":
        return
    root = Path(data_cfg.root)
    if task_cfg.dataset == "cifar10":
        layout = cifar10_layout(root)
        if layout == "pickles":
            check_cifar_files(root)
        elif layout == "folders":
            check_same_classes(root / "train", root / "test")
            for split in ("train", "test"):
                check_no_empty_class(root / split)
                decode_all(root / split)
        elif not data_cfg.download:
            raise cifar10_missing(root)
    elif task_cfg.dataset == "imagenet":
        if not (_has_class_dirs(root / "train") and _has_class_dirs(root / "val")):
            raise imagenet_missing(root)
        check_same_classes(root / "train", root / "val")
        for split in ("train", "val"):
            check_no_empty_class(root / split)
    else:
        raise ValueError(f"task.dataset={task_cfg.dataset!r} is not allowed; choose cifar10 or imagenet")


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
