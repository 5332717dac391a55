"""The project's own residual blocks and picture grid against torchvision's (which the workers
no longer import): the same weights for a seed, the same outputs, the same pixels."""
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision.models.resnet as tv_resnet
import torchvision.utils as tv_utils
from PIL import Image

from workloads import visualize
from workloads.models import backbones


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_blocks_build_torchvision_s_network(arch, stem, monkeypatch):
    torch.manual_seed(3)
    ours = backbones.build_backbone(arch, 0.25, stem).eval()
    block, layers = backbones.ARCHS[arch]
    tv_block = {"BasicBlock": tv_resnet.BasicBlock, "Bottleneck": tv_resnet.Bottleneck}[block.__name__]
    monkeypatch.setitem(backbones.ARCHS, arch, (tv_block, layers))
    torch.manual_seed(3)
    theirs = backbones.build_backbone(arch, 0.25, stem).eval()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)  # the names a saved backbone.pt carries
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same random draws, in the same order
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(ours(x), theirs(x))
    ours.train(), theirs.train()
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)


@pytest.mark.parametrize("n,nrow,pad_value", [(6, 4, 1.0), (1, 8, 0.0), (8, 2, 0.5)])
def test_grid_equals_torchvision_s(n, nrow, pad_value):
    tiles = torch.rand(n, 3, 5, 7)
    assert torch.equal(visualize.make_grid(tiles, nrow=nrow, padding=2, pad_value=pad_value),
                       tv_utils.make_grid(tiles, nrow=nrow, padding=2, pad_value=pad_value))
    grey = torch.rand(n, 1, 4, 4)
    assert torch.equal(visualize.make_grid(grey, nrow=nrow), tv_utils.make_grid(grey, nrow=nrow))


def test_saved_png_has_torchvision_s_pixels(tmp_path):
    picture = torch.rand(3, 9, 11)
    visualize.save_image(picture, tmp_path / "ours.png")
    tv_utils.save_image(picture, tmp_path / "theirs.png")
    ours, theirs = (np.asarray(Image.open(tmp_path / f)) for f in ("ours.png", "theirs.png"))
    assert ours.shape == (9, 11, 3) and np.array_equal(ours, theirs)
    tiles = torch.rand(5, 3, 4, 6)  # a batch is gridded with the defaults first
    visualize.save_image(tiles, tmp_path / "ours_batch.png")
    tv_utils.save_image(tiles, tmp_path / "theirs_batch.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ours_batch.png")),
                          np.asarray(Image.open(tmp_path / "theirs_batch.png")))


def test_training_and_picture_modules_do_not_import_torchvision():
    """What a Ray Train worker, an evaluation task and the driver import: no torchvision."""
    code = ("import sys; import orchestrator.train_worker, orchestrator.cell_task, orchestrator.runner, "
            "workloads.evaluation.evaluate, workloads.sipl.cell; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
