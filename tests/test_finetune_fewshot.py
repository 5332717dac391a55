"""Fine-tuning learns a simple image problem and picks its lr on val only; few-shot draws exactly
k per class and classifies separable features; both are deterministic for a seed."""
import numpy as np
import pytest
import torch

from workloads.evaluation.few_shot import few_shot, support_indices
from workloads.evaluation.finetune import fine_tune
from workloads.models.backbones import build_backbone

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _make_backbone():
    return build_backbone("resnet18", width=0.125)  # out_dim 64, ~0.2 M parameters


def _state(seed=0):
    torch.manual_seed(seed)
    return _make_backbone().state_dict()


def _images(n, seed, shift=0):
    """16 px noise; class c < 3 brightens colour channel c, class 3 brightens none.
    `shift` relabels (c + shift) % 4, to make a test split whose labels are all wrong."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randint(0, 120, (n, 3, 16, 16), generator=g)
    bright = y < 3
    x[bright.nonzero().squeeze(1), y[bright]] += 120
    return x.to(torch.uint8), (y + shift) % 4


def _tune(test_shift=0, **kw):
    args = dict(mean=MEAN, std=STD, lrs=(1e-6, 0.05), epochs=3, batch_size=32, seed=0)
    args.update(kw)
    return fine_tune(_make_backbone, _state(), _images(160, 0), _images(64, 1), _images(96, 2, test_shift),
                     4, **args)


def test_fine_tune_learns_and_chooses_lr_on_val_only():
    calls = []
    good = _tune(progress=lambda phase, e, n: calls.append((phase, e, n)))
    assert good.chosen_lr == 0.05 and good.val_top1[0.05] > 90 and good.top1 > 90  # chance is 25 %
    assert good.val_top1[1e-6] < good.val_top1[0.05]
    assert [c for c in calls if c[0] == "finetune refit"] == [("finetune refit", e, 3) for e in (1, 2, 3)]
    assert len(calls) == 9  # one per epoch for each of the two lrs and the refit
    # wrong test labels cannot change the choice or the val scores, only the test score
    bad = _tune(test_shift=1)
    assert bad.chosen_lr == good.chosen_lr and bad.val_top1 == good.val_top1
    assert bad.top1 < 10


def test_fine_tune_deterministic_and_leaves_state_alone():
    state = _state()
    before = {k: v.clone() for k, v in state.items()}
    run = lambda: fine_tune(_make_backbone, state, _images(64, 0), _images(32, 1), _images(32, 2), 4,
                            mean=MEAN, std=STD, lrs=(0.05,), epochs=2, batch_size=16, seed=3)
    a, b = run(), run()
    assert a == b
    assert state.keys() == before.keys() and all(torch.equal(state[k], before[k]) for k in state)


def test_fine_tune_rejects_bad_inputs():
    x, y = _images(8, 0)
    with pytest.raises(ValueError, match="uint8"):
        fine_tune(_make_backbone, _state(), (x.float(), y), (x, y), (x, y), 4, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="val"):
        fine_tune(_make_backbone, _state(), (x, y), (x, y[:3]), (x, y), 4, mean=MEAN, std=STD)


def _blobs(per_class, seed, classes=5, dim=32, sep=8.0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(per_class)
    x = torch.eye(classes, dim)[y] * sep + torch.randn(len(y), dim, generator=g) + 3.0
    return x, y


def test_few_shot_separable_blobs():
    res = few_shot(*_blobs(20, 0), *_blobs(40, 1), shots=(1, 10), episodes=3)
    assert set(res) == {1, 10}
    for k, r in res.items():
        assert r.shots == k and r.episodes == 3
        assert r.top1 > 99 and r.top5 == 100.0
    assert set(res[1].as_metrics("fewshot/1shot")) == {"fewshot/1shot/top1", "fewshot/1shot/top1_std",
                                                      "fewshot/1shot/top5"}


def test_support_has_exactly_k_per_class_and_varies_with_seed():
    y = torch.tensor([0] * 7 + [1] * 5 + [2] * 9 + [-1] * 4)
    for k in (1, 3, 5):
        idx = support_indices(y, k, seed=0)
        assert len(np.unique(idx)) == len(idx) and (y[idx] >= 0).all()
        assert np.bincount(y[idx].numpy()).tolist() == [k, k, k]
    supports = {tuple(support_indices(y, 3, seed=s)) for s in range(5)}
    assert len(supports) > 1
    assert support_indices(y, 3, seed=2).tolist() == support_indices(y, 3, seed=2).tolist()


def test_too_many_shots_names_k_and_smallest_class():
    x, y = _blobs(10, 0)
    keep = torch.cat([torch.arange(40), torch.arange(40, 43)])  # class 4 keeps only 3 examples
    with pytest.raises(ValueError, match=r"10-shot.*class \(4\) has only 3"):
        few_shot(x[keep], y[keep], *_blobs(5, 1), shots=(1, 10))


def test_few_shot_seeded_and_episodes_differ():
    hard = dict(sep=1.5)  # overlapping blobs, so the support set visibly matters
    data = (*_blobs(30, 0, **hard), *_blobs(40, 1, **hard))
    a = few_shot(*data, shots=(1, 5), episodes=4, seed=0)
    assert a == few_shot(*data, shots=(1, 5), episodes=4, seed=0)
    assert a[1].top1_std > 0  # episodes draw different supports
    assert a[1] != few_shot(*data, shots=(1, 5), episodes=4, seed=1)[1]
    assert few_shot(*data, shots=(1,), episodes=1)[1].top1_std == 0.0


@pytest.mark.parametrize("kw, msg", [(dict(shots=(0,)), "shots"), (dict(shots=(1.5,)), "shots"),
                                     (dict(episodes=0), "episodes")])
def test_few_shot_rejects_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        few_shot(*_blobs(5, 0), *_blobs(5, 1), **kw)


def test_few_shot_rejects_mismatched_lengths():
    x, y = _blobs(5, 0)
    with pytest.raises(ValueError, match="lengths"):
        few_shot(x, y[:-1], x, y)


def test_fine_tune_on_splits_read_batch_by_batch_matches_decoded():
    """data.loader: stream: the target's splits stay LazyImages (train and val from two sources,
    joined for the refit without decoding), and fine-tuning scores exactly what it scores on the
    decoded splits."""
    from workloads.data.lazy import ConcatImages, LazyImages, concat_images
    from workloads.data.prepare import target_splits
    from workloads.spec import DatasetRef, TargetSpec
    target = TargetSpec(key="dtd", label="dtd", data=DatasetRef(name="dtd-kit", split="val", root=None, download=False),
                        val_split="test", val_fraction=0.0, split_seed=0, label_fraction=1.0, test_split="train",
                        test_data=None, metric=None, ten_crop=False)
    lazy = target_splits(target, image_size=16, cache_dir=None, lazy=True)
    dense = target_splits(target, image_size=16, cache_dir=None)
    assert isinstance(lazy.train[0], LazyImages) and isinstance(lazy.val[0], LazyImages)
    both = concat_images([lazy.train[0], lazy.val[0]])
    whole = torch.cat([dense.train[0], dense.val[0]])
    idx = torch.tensor([0, len(whole) - 1, 5, len(dense.train[0]), 3])
    assert isinstance(both, ConcatImages) and len(both) == len(whole)
    assert torch.equal(both[idx], whole[idx]) and torch.equal(both[2:9], whole[2:9])
    kw = dict(mean=MEAN, std=STD, lrs=(0.05,), epochs=1, batch_size=64, seed=0)
    a = fine_tune(_make_backbone, _state(), lazy.train, lazy.val, lazy.test, lazy.num_classes, **kw)
    b = fine_tune(_make_backbone, _state(), dense.train, dense.val, dense.test, dense.num_classes, **kw)
    assert (a.top1, a.top5, a.val_top1) == (b.top1, b.top5, b.val_top1)
