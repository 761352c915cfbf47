"""The real vision loaders on small files written here in the real formats."""

import pytest
import torch
from vision_files import CLASSES, write_cifar_python, write_image_folder

from tasks.vision.data import CIFAR_MEAN, CIFAR_STD, SyntheticImages, cifar10, imagenet


def test_cifar_torchvision_format_reads_exact_pixels_and_labels(tmp_path):
    batches = write_cifar_python(tmp_path)
    train, test = cifar10(tmp_path, download=False)
    assert len(train) == 20 and len(test) == 4 and train.classes == CLASSES
    data, labels = batches["test_batch"]
    x, y = test[1]
    expected = torch.tensor(data[1].reshape(3, 32, 32), dtype=torch.float32) / 255
    expected = (expected - torch.tensor(CIFAR_MEAN)[:, None, None]) / torch.tensor(CIFAR_STD)[:, None, None]
    assert y == labels[1]
    torch.testing.assert_close(x, expected)


def test_cifar_image_folder_layout(tmp_path):
    write_image_folder(tmp_path, ["train", "test"], CLASSES, n=2)
    train, test = cifar10(tmp_path, download=False)
    assert len(train) == 20 and len(test) == 20
    assert train.classes == CLASSES  # alphabetical order = CIFAR-10's label order
    x, y = train[3]
    assert x.shape == (3, 32, 32) and y == 1


def test_missing_cifar_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        cifar10(tmp_path / "nowhere", download=False)
    msg = str(e.value)
    assert "nowhere/cifar-10-batches-py" in msg and "nowhere/train" in msg and "data.download=true" in msg


def test_imagenet_image_folder_gives_224_crops(tmp_path):
    write_image_folder(tmp_path, ["train", "val"], ["n01440764", "n01443537"], n=2, size=(300, 260))
    train, val = imagenet(tmp_path)
    assert train.classes == ["n01440764", "n01443537"]
    assert train[0][0].shape == (3, 224, 224) and val[3] [0].shape == (3, 224, 224) and val[3][1] == 1
    with pytest.raises(FileNotFoundError, match="ImageFolder layout"):
        imagenet(tmp_path / "missing")


def test_synthetic_images_are_deterministic_balanced_and_class_structured():
    ds = SyntheticImages(40, num_classes=4, image_size=32, seed=3, noise=1.0)
    x1, y1 = ds[5]
    x2, _ = ds[5]
    torch.testing.assert_close(x1, x2)
    assert x1.shape == (3, 32, 32) and [ds[i][1] for i in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    # Nearest class mean classifies held-out samples well above chance (1/4): the classes are learnable.
    means = torch.stack([torch.stack([ds[i][0] for i in range(c, 40, 4)]).mean(0) for c in range(4)])
    held = SyntheticImages(40, num_classes=4, image_size=32, seed=99, noise=1.0)
    hits = sum(int(((means - held[i][0]) ** 2).flatten(1).sum(1).argmin() == held[i][1]) for i in range(40))
    assert hits >= 36
