"""The kit ViT's cost against the kit ResNet's, in one run: images/s of one epoch of the real
pretraining loop (workloads.pretrain: batched two-view augmentation, the method's step, the EMA
update) on one CPU thread, as one cell of a `cpu` profile runs (cluster.cpus_per_worker 1).

  ResNet  cassle_table2.yaml's cpu cell: MoCo v2, ResNet-18 ×0.125 with the CIFAR stem
  ViT     cassle_table2_mocov3.yaml's cpu cell: MoCo v3, ViT-Tiny on 8-px patches, at each --depths

Random uint8 images at 32 px (the content does not change the cost), no style augmentation,
prefetch off. It prints images/s per network and the ResNet / ViT ratio (how many times longer a
ViT cell's pretraining takes).

    .venv/bin/python benchmarks/kit_vit.py [--images 1536] [--depths 1 2 4]
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from orchestrator.experiment import load_experiment
from workloads.callbacks import Callback
from workloads.pretrain import pretrain

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


class _Last(Callback):
    def on_epoch_end(self, stage, epoch, metrics, state):
        self.metrics = metrics


def images_per_s(spec, images: torch.Tensor) -> float:
    spec = replace(spec, optim=replace(spec.optim, epochs=1),
                   augmentation=replace(spec.augmentation, prefetch="off"))
    last = _Last()
    pretrain(spec, images, callback=last)
    return last.metrics["images_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1536)
    ap.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()
    torch.set_num_threads(1)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    resnet = load_experiment(EXPERIMENTS / "cassle_table2.yaml", "cpu").cells[0].spec
    base = images_per_s(resnet, images)
    print(f"ResNet-18 ×0.125 (CIFAR stem), MoCo v2: {base:.0f} images/s")
    vit = load_experiment(EXPERIMENTS / "cassle_table2_mocov3.yaml", "cpu").cells[0].spec
    for depth in args.depths:
        spec = replace(vit, backbone=replace(vit.backbone, vit=replace(vit.backbone.vit, depth=depth)))
        rate = images_per_s(spec, images)
        print(f"ViT-Tiny/8, {depth} block(s), MoCo v3: {rate:.0f} images/s; ResNet / ViT = {base / rate:.2f}")


if __name__ == "__main__":
    main()
