"""The `paper` profiles run, not only validate: `sassl rehearse` on fake datasets in the real
on-disk layouts (tests/fake_datasets.py), the experiment files copied with /data/ pointed at
them. On this CPU machine the cluster becomes one CPU worker and the batch a few images; the
rest is the profile's: ResNet-50 at 224 px with LARS and bf16 for SASSL table 1, the transfer
grid's readers (packed ImageNet and its 1 % split, iNat 2021, DTD, Painter by Numbers as a style
folder, banks at 256 px), SIPL's paper geometry on Tiny ImageNet. Not here: CASSLE's CIFAR
targets (torchvision checks the files' MD5, which a fake cannot pass)."""
import subprocess
import sys
from pathlib import Path

import pytest

from fake_datasets import paper_data

ROOT = Path(__file__).resolve().parents[1]
CPU = ["--set", "cluster.num_workers=1", "--set", "cluster.gpus_per_worker=0", "--set", "cluster.cpus_per_worker=1",
       "--steps", "1"]

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("shared_ray")]


@pytest.fixture(scope="module")
def paper_experiments(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    data = paper_data(root / "data")
    for f in (ROOT / "experiments").glob("*.yaml"):
        (root / f.name).write_text(f.read_text().replace("/data/", f"{data}/"))
    (root / "work").mkdir()
    return root


def rehearse(root: Path, name: str, *sets: str) -> str:
    res = subprocess.run([sys.executable, "-m", "orchestrator", "rehearse", f"../{name}.yaml", "--profile", "paper",
                          *CPU, *sets], cwd=root / "work", capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "estimated wall time of the grid" in res.stdout
    return res.stdout


def test_sassl_table1_paper_profile_at_its_real_architecture(paper_experiments):
    out = rehearse(paper_experiments, "sassl_table1", "--set", "optim.batch_size=4")
    assert "resnet50 ×1, 224 px, batch 4/worker" in out
    assert "stylefolder/all" in out  # the SASSL row stylizes with Painter by Numbers, not the kit
    assert "augmentation.style.style_data: paintings-kit" not in out


def test_the_transfer_grid_reads_every_paper_dataset(paper_experiments):
    out = rehearse(paper_experiments, "sassl_table2_transfer", "--set", "optim.batch_size=8", "--set",
                   "backbone.arch=resnet18", "--set", "backbone.width=0.25", "--set", "data.image_size=64",
                   "--set", "seeds=[0]")
    for dataset in ("packed/train", "inat2021/train_mini", "inat2021/val", "dtd/train", "dtd/val", "stylefolder/all"):
        assert dataset in out, dataset
    for target in ("imagenet (", "imagenet_1pct (", "inat2021 (", "dtd ("):
        assert target in out, target
    assert "5 pretraining piece(s), 1 stylizer stage(s)" in out


def test_sipl_paper_profile_reads_tiny_imagenet_as_shipped(paper_experiments):
    out = rehearse(paper_experiments, "sipl_table4", "--set", "optim.batch_size=4", "--set", "backbone.width=0.25",
                   "--set", "seeds=[0]")
    assert "tinyimagenet/val" in out and "15 images, 3 classes" in out  # labelled by val_annotations.txt
    assert "4 pretraining piece(s)" in out
