"""The real vision loaders on small files written here in the real formats."""

import shutil

import pytest
import torch
from omegaconf import OmegaConf
from vision_files import CLASSES, write_cifar_python, write_image_folder

from tasks.vision import check_data
from tasks.vision.data import CIFAR_MEAN, CIFAR_STD, SyntheticImages, cifar10, imagenet


def cfg_for(dataset, root, source="real", download=False):
    return OmegaConf.create({"task": {"dataset": dataset},
                             "data": {"source": source, "root": str(root), "download": download}})


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
    from helpers import compose_cfg, interrupt_at_step

    import engine.trainer
    from engine.launch import launch

    root = tmp_path / "cifar_jpg"
    write_image_folder(root, ["train", "test"], CLASSES[:4], n=6)
    over = ["task=cifar10_resnet20", "task.num_classes=4", "optim=sgd", *smoke_overrides, "data.source=real",
            f"data.root={root}", "trainer.num_workers=2", "trainer.epochs=3", "trainer.limit_train_batches=2"]
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    assert launch(compose_cfg([*over, f"paths.results_dir={full_dir}", f"paths.work_dir={full_dir}/ck"])) \
        == "completed"

    real_step = interrupt_at_step(monkeypatch, 4)  # second step of epoch 2, after epoch 1's checkpoint
    cut = [*over, f"paths.results_dir={cut_dir}", f"paths.work_dir={cut_dir}/ck"]
    with pytest.raises(KeyboardInterrupt):
        launch(compose_cfg(cut))
    monkeypatch.setattr(engine.trainer, "train_step", real_step)
    assert launch(compose_cfg([*cut, "resume=true"])) == "completed"

    (a, wa), (b, wb) = _weights_and_history(full_dir), _weights_and_history(cut_dir)
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# -- bad data: one line naming the file, before training ----------------------------------------------------------
def test_missing_cifar_batch_names_the_file_not_download_true(tmp_path):
    write_cifar_python(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    for call in (lambda: check_data(cfg_for("cifar10", tmp_path)), lambda: cifar10(tmp_path, download=False)):
        with pytest.raises(FileNotFoundError) as e:
            call()
        msg = str(e.value)
        assert "missing data_batch_4" in msg and "prepare_data.py cifar10" in msg and "download=True" not in msg
        assert "\n" not in msg


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_broken_cifar_pickle_is_named_at_check_and_at_load(tmp_path, damage):
    write_cifar_python(tmp_path, n_per_batch=8)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    raw = bad.read_bytes()
    bad.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": bytes(range(256)) * 8 + b"x",
                     "empty": b""}[damage])
    with pytest.raises(ValueError, match="data_batch_2"):
        check_data(cfg_for("cifar10", tmp_path))
    with pytest.raises(ValueError, match="data_batch_2"):
        cifar10(tmp_path, download=False)


def test_cifar_pickle_of_the_wrong_shape_is_named(tmp_path):
    import pickle

    import numpy as np

    write_cifar_python(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(pickle.dumps({"data": np.zeros((4, 1024), np.uint8), "labels": [0, 1, 2, 3]}))
    check_data(cfg_for("cifar10", tmp_path))  # the cheap check reads no pickle
    with pytest.raises(ValueError, match=r"test_batch: 'data' is uint8 \(4, 1024\)"):
        cifar10(tmp_path, download=False)
    bad.write_bytes(pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2]}))
    with pytest.raises(ValueError, match="test_batch: 4 images but 3 labels"):
        cifar10(tmp_path, download=False)


@pytest.mark.parametrize("dataset,splits", [("cifar10", ["train", "test"]), ("imagenet", ["train", "val"])])
def test_missing_class_folder_in_one_split_stops_naming_it(tmp_path, dataset, splits):
    write_image_folder(tmp_path, splits, CLASSES[:4], n=1)
    shutil.rmtree(tmp_path / splits[1] / CLASSES[1])  # would shift labels 2, 3 down to 1, 2
    with pytest.raises(ValueError) as e:
        check_data(cfg_for(dataset, tmp_path))
    assert f"1 only in {tmp_path / splits[0]}: {CLASSES[1]}" in str(e.value)
    with pytest.raises(ValueError, match=CLASSES[1]):
        cifar10(tmp_path, download=False) if dataset == "cifar10" else imagenet(tmp_path)


def test_truncated_jpeg_is_named_before_training_for_cifar_folders(tmp_path):
    write_image_folder(tmp_path, ["train", "test"], CLASSES[:2], n=2)
    check_data(cfg_for("cifar10", tmp_path))  # intact
    bad = tmp_path / "train" / CLASSES[1] / "0001.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(ValueError, match=f"{bad}: cannot decode"):
        check_data(cfg_for("cifar10", tmp_path))


def test_imagenet_image_that_fails_to_decode_names_the_file_when_read(tmp_path):
    write_image_folder(tmp_path, ["train", "val"], ["n01", "n02"], n=1, size=(40, 40))
    bad = tmp_path / "val" / "n02" / "0000.jpg"
    bad.write_bytes(b"not a jpeg")
    check_data(cfg_for("imagenet", tmp_path))  # no decoding up front at ImageNet's size
    _, val = imagenet(tmp_path)
    with pytest.raises(ValueError, match=f"{bad}: cannot decode"):
        val[1]


def test_check_data_reports_missing_data_and_skips_synthetic(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        check_data(cfg_for("cifar10", tmp_path / "none"))
    check_data(cfg_for("cifar10", tmp_path / "none", download=True))  # the loader will download it
    with pytest.raises(FileNotFoundError, match="ImageFolder layout"):
        check_data(cfg_for("imagenet", tmp_path / "none"))
    check_data(cfg_for("imagenet", tmp_path / "none", source="synthetic"))


@pytest.mark.parametrize("task", ["cifar10_resnet20", "cifar10_resnet32", "imagenet_resnet18"])
def test_check_data_on_the_composed_task_config(task, tmp_path):
    from helpers import compose_cfg

    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none")):
        check_data(compose_cfg([f"task={task}", "data.source=real", f"data.root={tmp_path / 'none'}"]))
    check_data(compose_cfg([f"task={task}", "data.source=synthetic", f"data.root={tmp_path / 'none'}"]))


@pytest.mark.parametrize("dataset,splits", [("cifar10", ["train", "test"]), ("imagenet", ["train", "val"])])
def test_empty_class_folder_is_named_before_training(tmp_path, dataset, splits):
    write_image_folder(tmp_path, splits, CLASSES[:3], n=1)
    (tmp_path / splits[1] / CLASSES[2] / "0000.jpg").unlink()
    with pytest.raises(ValueError, match=f"{tmp_path / splits[1]}: class folders without images: {CLASSES[2]}"):
        check_data(cfg_for(dataset, tmp_path))
