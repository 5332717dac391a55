"""Stylizer training lowers its loss; style banks are deterministic embeddings."""
import torch

from workloads.stylize.loss_networks import build_loss_network
from workloads.stylize.losses import PerceptualLoss
from workloads.stylize.train import build_stylizer, style_bank, to_size, train_stylizer

CFG = {"width": 0.25, "embed_dim": 16, "image_size": 16, "steps": 25, "batch_size": 4, "lr": 3e-3,
       "content_weight": 1.0, "style_weight": 0.05, "tv_weight": 1e4, "seed": 0}


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
    torch.manual_seed(CFG["seed"])
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
