"""Writers of small vision datasets in their real on-disk formats (used by the vision tests)."""

import pickle

import numpy as np
from PIL import Image

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar_python(root, n_per_batch=4, seed=0):
    """torchvision's CIFAR-10 layout: pickled dicts of uint8 rows (3072 = 3 x 32 x 32, channel-major)."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, size=n_per_batch)]
        with open(d / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
        batches[name] = (data, labels)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES, "num_cases_per_batch": n_per_batch}, f)
    return batches


def write_image_folder(root, splits, classes, n=2, size=(32, 32), seed=0):
    rng = np.random.default_rng(seed)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i:04d}.jpg", quality=95)
