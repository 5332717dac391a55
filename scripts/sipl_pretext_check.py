"""Does SIPL's pretext task learn? One pretext training on the CIFAR-10 kit, no Ray, no MLflow:
prints the loss, train and held-out pretext accuracy (%) of every epoch (chance is 12.5 %).

The defaults are sipl_table4.yaml's cpu profile (ResNet-18 at width 0.5, the kit geometry, all
10,000 kit training images, 10 epochs, batch 64, alpha 5); docs/sipl.md's "Does the pretext task
learn?" figures came from this script, one thread per run:

    .venv/bin/python scripts/sipl_pretext_check.py --variant opl --lr 2e-4
    .venv/bin/python scripts/sipl_pretext_check.py --variant siplv1 --lr 5e-5 --warmup 0
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workloads.callbacks import Callback  # noqa: E402
from workloads.data.prepare import pretrain_images  # noqa: E402
from orchestrator.config import CellConfig  # noqa: E402
from workloads.sipl.augment import VARIANTS  # noqa: E402
from workloads.sipl.train import pretrain_sipl  # noqa: E402
from workloads.spec import CellSpec  # noqa: E402


class PrintEpochs(Callback):
    def on_epoch_end(self, stage, epoch, metrics, state):
        print(f"epoch {epoch:3d}  loss {metrics['loss']:.3f}  train {metrics['pretext_acc']:5.1f}  "
              f"val {metrics['val_pretext_acc']:5.1f}  kl_weight {metrics['kl_weight']:.2f}  "
              f"{metrics['images_per_s']:.0f} images/s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=VARIANTS, default="siplv1")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--alpha", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=0.0, help="alpha_warmup_epochs (0: the paper's constant alpha)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--limit", type=int, default=None, help="a seeded random subset of the kit's training images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # the cells' own reader: the same images, and the same seeded subset for --limit, as data.limit
    spec = CellSpec.from_dict(CellConfig(
        seed=args.seed, data={"pretrain": {"name": "cifar10-kit", "split": "train"}, "image_size": 32, "limit": args.limit},
        backbone={"arch": "resnet18", "width": 0.5, "stem": "imagenet"},
        method={"name": "sipl", "variant": args.variant, "alpha": args.alpha, "alpha_warmup_epochs": args.warmup,
                "geometry": {"image_size": 48, "patch_size": 12, "input_size": 32, "jitter": 1}},
        optim={"optimizer": "adam", "lr": args.lr, "weight_decay": 0.0, "batch_size": 64, "epochs": args.epochs},
    ).model_dump(mode="json"))
    images = pretrain_images(spec.data, cache_dir=None)
    print(f"{len(images)} images; {spec.method}, {spec.optim}", flush=True)
    t0 = time.perf_counter()
    pretrain_sipl(spec, images, callback=PrintEpochs())
    print(f"{time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
