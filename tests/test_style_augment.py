"""SASSL style augmentation: the behaviours docs/methods.md pins down."""
import pytest
import torch

from specs import view1, view2
from workloads.augment import TwoViewAugment
from workloads.stylize.augment import StyleAugment
from workloads.stylize.model import StyleTransferNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    n = StyleTransferNet(width=0.25)
    with torch.no_grad():  # give the γ/β maps some spread so that style changes the image
        for p in n.transformer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return n.eval()


def batch(b=8, s=32, seed=0):
    return torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(seed))


def aug(net, **kw):
    kw.setdefault("bank", torch.randn(5, 100))
    return StyleAugment(net, generator=torch.Generator().manual_seed(1), **kw)


def test_p_zero_leaves_every_image_unchanged(net):
    x = batch()
    assert torch.equal(aug(net, p=0.0)(x), x)


def test_p_one_changes_every_image(net):
    x = batch()
    out = aug(net, p=1.0, alpha=(0.5, 0.5), beta=(1.0, 1.0))(x)
    assert ((out - x).abs().flatten(1).amax(1) > 1e-3).all()


def test_beta_zero_returns_the_content_exactly(net):
    x = batch()
    assert torch.equal(aug(net, p=1.0, beta=(0.0, 0.0))(x), x)


def test_alpha_zero_uses_the_content_embedding(net):
    x = batch()
    a = aug(net, p=1.0, alpha=(0.0, 0.0), beta=(1.0, 1.0), source="noise")
    out = a(x)
    z_c = net.embed(x)
    assert torch.allclose(out, net.transformer(x, z_c, z_content=z_c), atol=1e-6)


def test_in_batch_pairs_i_with_i_plus_k(net):
    x = batch(b=6)
    a = aug(net, p=1.0, source="in_batch", shift=2, alpha=(1.0, 1.0), beta=(1.0, 1.0))
    out = a(x)
    assert a.last.style_index.tolist() == [(i + 2) % 6 for i in range(6)]
    z = net.embed(x)
    want = net.transformer(x, z.roll(-2, dims=0), z_content=z)
    assert torch.allclose(out, want, atol=1e-5)


def test_external_bank_rows_are_sampled_uniformly(net):
    bank = torch.randn(4, 100)
    a = aug(net, p=1.0, source="external", bank=bank)
    seen = torch.cat([(a(batch(b=16, seed=s)), a.last.style_index)[1] for s in range(10)])
    counts = torch.bincount(seen, minlength=4)
    assert counts.sum() == 160 and counts.min() > 20  # 40 expected each


def test_only_the_left_view_changes_and_no_gradient_reaches_the_stylizer(net):
    x = (batch(b=4) * 255).to(torch.uint8)
    two = TwoViewAugment(view1(), view2(), out_size=32)
    plain = two(x, generator=torch.Generator().manual_seed(3))
    a = aug(net, p=1.0, alpha=(1.0, 1.0), beta=(1.0, 1.0))
    styled = two(x, generator=torch.Generator().manual_seed(3), left_hook=a)
    assert not torch.allclose(plain[0], styled[0])
    assert torch.equal(plain[1], styled[1])
    assert not styled[0].requires_grad and all(not p.requires_grad for p in a.net.parameters())


def test_stylized_layers_and_sources_are_validated(net):
    with pytest.raises(ValueError, match="style source 'bogus'"):
        aug(net, source="bogus")
    with pytest.raises(ValueError, match="alpha: need 0 <= low <= high <= 1"):
        aug(net, alpha=(0.5, 0.2))
    with pytest.raises(ValueError, match="needs a non-empty style bank"):
        StyleAugment(net, source="external", bank=None)
    with pytest.raises(ValueError):
        aug(net, p=1.0, stylized_layers=5)


def test_the_picture_grid_draws_without_touching_the_training_hook(net, tmp_path):
    """The grid is drawn on step 0 while the prefetch thread stylizes the next batches with the
    same hook: it must neither set the hook's p or generator (a training batch could be fully
    stylized) nor advance its random stream."""
    from workloads.stylize.pictures import save_style_grid

    class Frozen(StyleAugment):
        def __setattr__(self, name, value):
            if self.__dict__.get("guard") is self:  # the training hook itself (a copy may change)
                raise AssertionError(f"the picture grid set the training hook's {name}")
            object.__setattr__(self, name, value)

    hook = aug(net, p=0.3, source="external")
    hook.__class__ = Frozen
    hook.guard = hook
    state, last = hook.generator.get_state(), hook.last
    x = (batch(4) * 255).to(torch.uint8)
    save_style_grid(x, hook, 32, tmp_path / "grid.png", n=4)
    assert torch.equal(hook.generator.get_state(), state) and hook.last is last and hook.p == 0.3
    assert (tmp_path / "grid.png").stat().st_size > 0
