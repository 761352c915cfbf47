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


def _weights_and_history(out_dir):
    import glob
    import json

    (rec,) = [json.loads(open(p).read()) for p in glob.glob(str(out_dir / "runs/*/*/*.json"))]
    (ck,) = glob.glob(str(out_dir / "ck/*/*/*/last.pt"))
    return rec, torch.load(ck, weights_only=False)["model"]


def test_resume_with_data_loader_workers_is_bit_exact(tmp_path, smoke_overrides, monkeypatch):
    # Real JPEGs through two worker processes: random crops and flips are drawn in the workers, so a resumed
    # process must seed them for epoch e exactly as an uninterrupted one does (issue 13, item 1).
    from helpers import compose_cfg

    import engine.trainer
    from engine.launch import launch

    root = tmp_path / "cifar_jpg"
    write_image_folder(root, ["train", "test"], CLASSES[:4], n=6)
    over = ["task=cifar10_resnet20", "task.num_classes=4", "optim=sgd", *smoke_overrides, "data.source=real",
            f"data.root={root}", "trainer.num_workers=2", "trainer.epochs=3", "trainer.limit_train_batches=2"]
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    assert launch(compose_cfg([*over, f"paths.results_dir={full_dir}", f"paths.work_dir={full_dir}/ck"])) \
        == "completed"

    real_step, calls = engine.trainer.train_step, {"n": 0}

    def interrupting_step(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:  # second step of epoch 2, after epoch 1's checkpoint
            raise KeyboardInterrupt
        return real_step(*a, **k)

    monkeypatch.setattr(engine.trainer, "train_step", interrupting_step)
    cut = [*over, f"paths.results_dir={cut_dir}", f"paths.work_dir={cut_dir}/ck"]
    with pytest.raises(KeyboardInterrupt):
        launch(compose_cfg(cut))
    monkeypatch.setattr(engine.trainer, "train_step", real_step)
    assert launch(compose_cfg([*cut, "resume=true"])) == "completed"

    (a, wa), (b, wb) = _weights_and_history(full_dir), _weights_and_history(cut_dir)
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
