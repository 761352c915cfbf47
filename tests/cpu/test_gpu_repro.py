"""scripts/pack_cifar.py (CIFAR-10 in one small checked file) and scripts/gpu_repro.sh as a dry run on CPU."""

import glob
import json
import os
import pickle
import subprocess

import numpy as np
import pytest
from helpers import ROOT
from PIL import Image
from vision_files import CLASSES, write_image_folder

from scripts import pack_cifar


def smooth_images(n, seed):
    """Images JPEG keeps almost intact (smooth colour ramps), so a round trip can be checked pixel by pixel."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 32)
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(40, 200, size=3)
        img = np.stack([a + 50 * ramp[None, :] + 0 * ramp[:, None], b + 40 * ramp[:, None] + 0 * ramp[None, :],
                        np.full((32, 32), c)], axis=-1)
        out.append(np.broadcast_to(img, (32, 32, 3)).astype(np.uint8))
    return np.stack(out)


def write_smooth_pickles(root, per_batch=6):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    written = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        imgs = smooth_images(per_batch, k)
        labels = [(k + i) % 10 for i in range(per_batch)]
        with open(d / name, "wb") as f:
            pickle.dump({"data": imgs.transpose(0, 3, 1, 2).reshape(per_batch, -1), "labels": labels}, f)
        written[name] = (imgs, labels)
    return written


def test_pack_from_pickles_round_trips_pixels_and_labels(tmp_path):
    written = write_smooth_pickles(tmp_path / "src")
    digest = pack_cifar.pack(tmp_path / "src", tmp_path / "p.npz", quality=95)
    assert (tmp_path / "p.npz.sha256").read_text() == f"{digest}  p.npz\n"
    x, y = pack_cifar.decode(tmp_path / "p.npz", "train")
    want = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert y.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert x.shape == (30, 32, 32, 3) and np.abs(x.astype(int) - want).mean() < 2.0  # JPEG q95 of smooth ramps
    # unpack: torchvision's layout, which the vision loader reads; same multiset of (image, label)
    from tasks.vision.data import cifar10

    assert pack_cifar.unpack(tmp_path / "p.npz", tmp_path / "out") == tmp_path / "out" / "cifar-10-batches-py"
    train, test = cifar10(tmp_path / "out", download=False)
    assert len(train) == 30 and len(test) == 6
    assert sorted(train.targets) == sorted(y.tolist())
    assert sorted(map(bytes, train.data)) == sorted(map(bytes, x))


def test_pack_keeps_jpeg_files_byte_for_byte(tmp_path):
    write_image_folder(tmp_path / "src", ["train", "test"], CLASSES, n=2)
    pack_cifar.pack(tmp_path / "src", tmp_path / "p.npz")
    z = np.load(tmp_path / "p.npz")
    assert len(z["header_offsets"]) == 2  # all images share one header, stored once
    x, y = pack_cifar.decode(tmp_path / "p.npz", "test")
    assert y.tolist() == [c for c in range(10) for _ in range(2)]  # CIFAR-10's class index, folder by folder
    for i, (c, n) in enumerate((c, n) for c in CLASSES for n in range(2)):
        orig = np.asarray(Image.open(tmp_path / "src" / "test" / c / f"{n:04d}.jpg").convert("RGB"))
        assert np.array_equal(x[i], orig)  # the same bytes decode to the same pixels
    tails = z["test_bytes"].nbytes + z["headers"].nbytes
    files = sum(p.stat().st_size for p in (tmp_path / "src" / "test").rglob("*.jpg"))
    assert tails == files - (len(y) - 1) * z["headers"].nbytes  # only the repeated headers are gone


def test_pack_rejects_a_folder_that_is_not_cifar10(tmp_path):
    write_image_folder(tmp_path / "src", ["train", "test"], ["a", "b"], n=1)
    with pytest.raises(ValueError, match="not CIFAR-10's"):
        pack_cifar.pack(tmp_path / "src", tmp_path / "p.npz")


def run_repro(tmp_path, pack, **env):
    e = {**os.environ, "GPU_PACK": str(pack), "GPU_RESULTS": str(tmp_path / "gpu"), "GPU_REPRO_DRY": "1",
         "GPU_EPOCHS": "2", "GPU_TIME_LIMIT": "600", "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT),
         "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", "scripts/gpu_repro.sh"], cwd=ROOT, env=e, capture_output=True, text=True,
                          timeout=900)


def test_gpu_repro_dry_run_on_cpu(tmp_path):
    write_image_folder(tmp_path / "src", ["train", "test"], CLASSES, n=3)
    pack_cifar.pack(tmp_path / "src", tmp_path / "pack" / "c.npz")
    r = run_repro(tmp_path, tmp_path / "pack" / "c.npz")
    assert r.returncode == 0, r.stdout + r.stderr
    recs = [json.load(open(p)) for p in glob.glob(str(tmp_path / "gpu/runs/cifar10_resnet20/*/*.json"))]
    assert sorted(r["optim"] for r in recs) == ["adahessian", "adamw", "sgd"]
    for rec in recs:
        assert rec["status"] == "completed" and rec["data_source"] == "real" and rec["scale"] == "gpu"
        assert [h["epoch"] for h in rec["history"]] == [1, 2]
        assert rec["config"]["task"]["schedule"]["milestones"] == [1, 2]  # 1/2 and 3/4 of 2 epochs, kept apart
    readme = (tmp_path / "gpu/README.md").read_text()
    digest = (tmp_path / "pack/c.npz.sha256").read_text().split()[0]
    assert f"sha256 {digest} (checked): 30 training and 30 test images" in readme
    assert "then 2 epochs, milestones [1, 2]" in readme
    assert glob.glob(str(tmp_path / "gpu/figures/*.png")) and not list(tmp_path.glob("gpu_repro.*"))


def test_gpu_repro_refuses_a_damaged_pack(tmp_path):
    write_image_folder(tmp_path / "src", ["train", "test"], CLASSES, n=1)
    pack = tmp_path / "c.npz"
    pack_cifar.pack(tmp_path / "src", pack)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle
    pack.write_bytes(bytes(data))
    r = run_repro(tmp_path, pack)
    assert r.returncode == 2 and "does not match its checksum" in r.stderr
    assert not (tmp_path / "gpu").exists()
    r = run_repro(tmp_path, tmp_path / "missing.npz")
    assert r.returncode == 2 and "missing.npz or" in r.stderr and "scripts.pack_cifar pack" in r.stderr
