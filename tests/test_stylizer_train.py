"""Stylizer training lowers its loss; style banks are deterministic embeddings."""
import copy
from dataclasses import replace

import torch

from specs import cell_spec
from workloads.spec import DatasetRef
from workloads.stylize.loss_networks import build_loss_network
from workloads.stylize.losses import PerceptualLoss
from workloads.stylize.train import build_stylizer, style_bank, style_pool, to_size, train_stylizer

CFG = cell_spec(stylizer={"pretrained": None, "width": 0.25, "embed_dim": 16, "image_size": 16, "steps": 25,
                          "batch_size": 4, "lr": 3e-3, "content_weight": 1.0, "style_weight": 0.05, "tv_weight": 1e4,
                          "seed": 0}).stylizer


def pools():
    g = torch.Generator().manual_seed(0)
    content = torch.randint(0, 256, (12, 3, 16, 16), generator=g, dtype=torch.uint8)
    ramp = torch.linspace(0, 255, 16).to(torch.uint8)
    style = torch.stack([ramp.view(1, 1, 16).expand(3, 16, 16), ramp.view(1, 16, 1).expand(3, 16, 16)])
    return content, style


def test_short_training_lowers_the_loss():
    torch.manual_seed(0)
    loss_net = build_loss_network("random-vgg16")
    content, style = pools()
    xc, xs = to_size(content[:4], 16), to_size(style[[0, 1, 0, 1]], 16)
    criterion = PerceptualLoss(loss_net, style_weight=0.05)
    torch.manual_seed(CFG.seed)
    before = criterion(build_stylizer(CFG)(xc, xs), xc, xs)["total"].item()
    net = train_stylizer(CFG, content, style, loss_net)
    with torch.no_grad():
        after = criterion(net(xc, xs), xc, xs)["total"].item()
    assert after < 0.8 * before


def test_style_bank_is_one_embedding_per_style_image():
    torch.manual_seed(0)
    net = build_stylizer(CFG)
    _, style = pools()
    bank = style_bank(net, style, 16, batch_size=1)
    assert bank.shape == (2, 16)
    assert torch.allclose(bank, style_bank(net, style, 16))
    assert not torch.allclose(bank[0], bank[1])


def test_content_and_styles_read_batch_by_batch_train_the_same_stylizer():
    """data.loader: stream: the stylizer's content split as LazyImages and its style pool as
    ConcatImages (decoded per step) give the very network, and the very style bank, that the
    decoded splits give; and the loader decides which one it gets."""
    from workloads.data import open_source
    from workloads.data.lazy import ConcatImages, LazyImages
    from workloads.data.prepare import load_images, reads_lazily
    ref = DatasetRef(name="dtd-kit", split="val", root=None, download=False)
    styles = [DatasetRef(name="paintings-kit", split="all", root=None, download=False), ref]
    lazy, _, _ = load_images(ref, 16, None, lazy=True)
    dense, _, _ = load_images(ref, 16, None)
    assert isinstance(lazy, LazyImages) and len(lazy) == len(dense) == len(open_source("dtd-kit", split="val", image_size=16))
    lazy_style, dense_style = style_pool(styles, 16, None, lazy=True), style_pool(styles, 16, None)
    assert isinstance(lazy_style, ConcatImages) and len(lazy_style) == len(dense_style) == 300 + len(dense)
    cfg = replace(CFG, steps=3)
    loss_net, nets = build_loss_network("random-vgg16"), []
    for content, style in ((lazy, lazy_style), (dense, dense_style)):
        torch.manual_seed(0)
        nets.append(train_stylizer(cfg, content, style, copy.deepcopy(loss_net)))
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(style_bank(nets[0], lazy_style, 16), style_bank(nets[0], dense_style, 16))
    data = cell_spec().data
    assert reads_lazily(replace(data, loader="stream"), ref, 16) and not reads_lazily(replace(data, loader="memory"), ref, 16)
    assert not reads_lazily(replace(data, loader="auto", memory_budget_gb=2.0), ref, 16)
    assert reads_lazily(replace(data, loader="auto", memory_budget_gb=1e-6), ref, 16)
