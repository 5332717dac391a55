"""GPU check of the data plane: a few pretraining steps of MoCo v2 and SimCLR, each plain, with
SASSL's style augmentation and with CASSLE's conditioned projector, in mixed precision, with the
views made one batch ahead on their own CUDA stream, at 32 px (ResNet-18) and 224 px (ResNet-50);
then MoCo v3 on a ViT-B/16 at 224 px, plain and with SASSL (SASSL's table 11).

It needs only torch, torchvision and numpy (no Ray, MLflow or pydantic), and for the ViT settings
timm, which is pure Python: where it is not installed, its wheel is read as it is (put it in
benchmarks/wheels/ with `pip download timm --no-deps -d benchmarks/wheels`, or pass --timm-wheel;
without it those settings are reported as skipped). Copy the repository to any machine with a
CUDA build of torch and run

    python benchmarks/gpu_check.py                          # cuda, bf16, 32 and 224 px
    python benchmarks/gpu_check.py --stylizer path/to/magenta-arbitrary-v1.pt

It prints images/s per setting, the SASSL / default and CASSLE / default ratios, the peak GPU
memory and the final loss, then the streamed path's JPEG decode on the device (nvJPEG) against
PIL on one CPU thread, then one ResNet-50 step at the paper profiles' per-GPU batch (512 at
224 px) with plain and with synchronised batch norm (peak memory and time of each), and exits 1
on a non-finite loss or an error (after running the rest).
The stylizer is the converted Magenta checkpoint that `sassl stylize` or any SASSL run writes to
its run directory's `cache/weights/` (by default `runs/cache/weights/magenta-arbitrary-v1.pt`
in the repository, where the default looks); without one it is the same architecture, randomly
initialised: the same cost, not the same pictures. The test suite runs it on CPU at a tiny size (`--device cpu`) so it
cannot rot; on one modern GPU the defaults take well under 5 minutes.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository, when not installed

from workloads.augment import TwoViewAugment  # noqa: E402
from workloads.backends import configure_backends  # noqa: E402
from workloads.augment.prefetch import Prefetcher, make_views  # noqa: E402
from workloads.methods import build_method  # noqa: E402
from workloads.models.backbones import build_backbone  # noqa: E402
from workloads.models.sync_bn import convert_sync_bn, sync_alone  # noqa: E402
from workloads.optim import build_optimizer  # noqa: E402
from workloads.precision import amp_dtype, autocast  # noqa: E402
from workloads.spec import ViewConfig  # noqa: E402
from workloads.stylize import magenta  # noqa: E402
from workloads.stylize.augment import StyleAugment  # noqa: E402
from workloads.stylize.model import load_stylizer  # noqa: E402

METHODS = {"moco_v2": dict(proj_hidden_dim=2048, proj_dim=128, predictor=False, temperature=0.2),
           "simclr": dict(proj_hidden_dim=2048, proj_dim=128, temperature=0.2)}
# MoCo v3 on a Vision Transformer (SASSL table 11, CASSLE's MoCo-v3 rows): its ViT recipe's heads,
# AdamW at 1.5e-4 × batch / 256; default and SASSL only (CASSLE on it is the ResNets' code path)
VIT_METHOD = ("moco_v3", dict(proj_hidden_dim=4096, proj_dim=256, proj_layers=3, pred_hidden_dim=4096,
                              temperature=0.2, momentum=0.99))
VIT_VARIANTS = ("default", "sassl")
VARIANTS = ("default", "sassl", "cassle")
# BYOL's two views as the schema's augmentation.view1/view2 defaults have them, written out: this
# script runs where the schema (pydantic) is not installed (tests/test_gpu_check.py keeps them equal)
VIEW = dict(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_p=0.5, jitter_p=0.8, brightness=0.4, contrast=0.4,
            saturation=0.2, hue=0.1, grayscale_p=0.2, blur_sigma=(0.1, 2.0), blur_kernel_frac=0.1,
            solarize_threshold=0.5)
VIEWS = (ViewConfig(**VIEW, blur_p=1.0, solarize_p=0.0), ViewConfig(**VIEW, blur_p=0.1, solarize_p=0.2))
ARCH = {32: "resnet18"}  # larger sizes: resnet50, the papers' backbone


def load_net(path: str | None, device: torch.device):
    """The pretrained port when its converted checkpoint is there, else the same architecture at random."""
    if path and Path(path).expanduser().is_file():
        return load_stylizer(Path(path).expanduser(), magenta.architecture(), map_location=device), "pretrained"
    torch.manual_seed(0)
    return magenta.build_magenta_net(), "random init (no converted checkpoint given)"


def import_timm(wheel: str | None) -> str | None:
    """None when timm imports (installed, or from ``wheel``: timm is pure Python, so its wheel works
    as a path entry on a machine without it), else why not."""
    try:
        import timm  # noqa: F401
        return None
    except ImportError:
        pass
    if wheel and Path(wheel).expanduser().is_file():
        sys.path.insert(0, str(Path(wheel).expanduser()))
        try:
            import timm  # noqa: F401,F811
            return None
        except ImportError as e:
            return f"timm from {wheel} does not import: {e}"
    return ("timm is not installed; put its wheel beside this script (`pip download timm --no-deps -d "
            "benchmarks/wheels`) or pass --timm-wheel")


def run_setting(method: str, variant: str, size: int, args, device: torch.device, net) -> dict:
    torch.manual_seed(0)
    if method == VIT_METHOD[0]:
        backbone = build_backbone(args.vit_arch, image_size=size, patch_size=args.vit_patch, depth=args.vit_depth)
        fields = dict(VIT_METHOD[1])
    else:
        backbone = build_backbone(ARCH.get(size, "resnet50"), args.width, "imagenet")
        fields = dict(METHODS[method])
    if variant == "cassle":
        fields.update(aug_mode="cassle")
    model = build_method(method, backbone, **fields).to(device, memory_format=torch.channels_last)
    if method == VIT_METHOD[0]:
        opt = build_optimizer(model, "adamw", 1.5e-4 * args.batch / 256, 0.9, 0.1)
    else:
        opt = build_optimizer(model, "sgd", 0.03, 0.9, 1e-4)
    augment = TwoViewAugment(*VIEWS, out_size=size, omega=variant == "cassle").to(device)
    dtype = amp_dtype(args.precision, device)
    gen = torch.Generator(device=device).manual_seed(0)
    hook = None
    if variant == "sassl":
        bank = torch.randn(64, 100, generator=torch.Generator().manual_seed(0)).to(device)
        hook = StyleAugment(net.to(device), p=0.8, source="external", bank=bank, generator=gen,
                            size=magenta.WORK_SIZE if size < magenta.WORK_SIZE else None,
                            amp_dtype=dtype if device.type == "cuda" else None)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    src = torch.Generator().manual_seed(1)
    n = args.warmup + args.steps
    host = [torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8, generator=src) for _ in range(n)]
    pin = device.type == "cuda"
    batches = ((x.pin_memory() if pin else x).to(device, non_blocking=True) for x in host)
    views = Prefetcher(batches, lambda x: make_views(augment, x, gen, hook), device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0, loss = None, math.nan
    for i, (_, v1, v2, info) in enumerate(views):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        omegas = {"omega1": info["view1"]["omega"], "omega2": info["view2"]["omega"]} if variant == "cassle" else {}
        with autocast(device.type, dtype):
            out = model(v1, v2, **omegas)
        opt.zero_grad(set_to_none=True)
        scaler.scale(out["loss"]).backward()
        scaler.step(opt)
        scaler.update()
        model.after_step(i / n)
        loss = out["loss"].item()
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at step {i + 1}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else math.nan
    return {"images_per_s": args.steps * args.batch / seconds, "peak_mib": peak, "loss": loss}


def check_decode(args, device: torch.device) -> dict:
    """The streamed path's JPEG decode (data.stream_decode): PIL on the CPU (the worker's threads)
    against torchvision's decoder on ``device`` (nvJPEG on a GPU), on synthetic 320 x 240 JPEGs
    cropped to --decode-size: images/s of each, and whether the crop boxes agree exactly."""
    import io

    import numpy as np
    from PIL import Image

    from workloads.data.device_decode import decode_rows_on_device
    from workloads.data.stream import decode_rows

    g = np.random.default_rng(0)
    jpegs = []
    for _ in range(args.decode_images):
        buf = io.BytesIO()
        Image.fromarray(g.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
        jpegs.append(buf.getvalue())
    kw = dict(views=VIEWS, size=args.decode_size, seed=0, epoch=0)
    idx = list(range(len(jpegs)))
    t = time.perf_counter()
    cpu, _ = decode_rows(jpegs, idx, **kw)
    pil_s = time.perf_counter() - t
    decode_rows_on_device(jpegs[:8], idx[:8], device=device, **kw)  # warm-up (CUDA context, nvJPEG handles)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    dev, bad = decode_rows_on_device(jpegs, idx, device=device, **kw)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dev_s = time.perf_counter() - t
    same_boxes = torch.equal(cpu.crop1, dev.crop1.cpu()) and torch.equal(cpu.crop2, dev.crop2.cpu())
    diff = (cpu.view1.float() - dev.view1.cpu().float()).abs().mean().item()
    return {"pil": len(jpegs) / pil_s, "device": len(jpegs) / dev_s, "same_boxes": same_boxes, "diff": diff,
            "bad": bad}


def check_sync_bn(args, device: torch.device) -> dict[str, dict[str, float]]:
    """One ResNet-50 training step (forward under autocast, backward, SGD) at the paper
    profiles' per-GPU batch, with plain and with synchronised batch norm (its collectives
    skipped on one device, ``sync_alone``): peak memory and seconds per step of each."""
    size = args.syncbn_size
    out = {}
    for kind in ("plain", "sync"):
        torch.manual_seed(0)
        net = build_backbone("resnet50", args.width, "imagenet").to(device, memory_format=torch.channels_last)
        if kind == "sync":
            convert_sync_bn(net)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(args.syncbn_batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        dtype = amp_dtype(args.precision, device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        with sync_alone():  # the plain network has no SyncBatchNorm: unaffected
            for _ in range(3):
                t = time.perf_counter()
                with autocast(device.type, dtype):
                    loss = net(x).float().pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - t)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else math.nan
        out[kind] = {"peak_mib": peak, "seconds": min(times[1:])}
        del net, opt, x, loss
    return out


def _mib(v: float) -> str:
    return f"{v:>8.0f}" if math.isfinite(v) else f"{'n/a':>8}"  # no CUDA memory counter on CPU


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--sizes", type=int, nargs="*", default=[32, 224], help="crop sizes of the ResNet settings")
    ap.add_argument("--batch", type=int, default=None, help="default: 256 at 32 px, 64 at larger sizes")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--width", type=float, default=1.0, help="backbone width multiplier")
    ap.add_argument("--stylizer", default=str(REPO / "runs" / "cache" / "weights" / "magenta-arbitrary-v1.pt"),
                    help="converted Magenta checkpoint (a run directory's cache/weights/); missing: random init")
    ap.add_argument("--decode-images", type=int, default=512, help="JPEGs for the decode check (0: skip it)")
    ap.add_argument("--decode-size", type=int, default=224)
    ap.add_argument("--syncbn-batch", type=int, default=512,
                    help="per-GPU batch of the sync-BN memory check (the paper profiles': 512; 0: skip it)")
    ap.add_argument("--syncbn-size", type=int, default=224)
    ap.add_argument("--vit-sizes", type=int, nargs="*", default=[224],
                    help="crop sizes of the MoCo v3 ViT settings (none: skip them)")
    ap.add_argument("--vit-arch", default="vit_base", choices=["vit_tiny", "vit_small", "vit_base"])
    ap.add_argument("--vit-patch", type=int, default=16)
    ap.add_argument("--vit-depth", type=int, default=None, help="transformer blocks (default: the size's 12)")
    ap.add_argument("--vit-batch", type=int, default=64)
    wheels = sorted((REPO / "benchmarks" / "wheels").glob("timm-*.whl"))
    ap.add_argument("--timm-wheel", default=str(wheels[-1]) if wheels else None,
                    help="timm's wheel, used when timm is not installed (default: benchmarks/wheels/timm-*.whl)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False (use --device cpu)", file=sys.stderr)
        return 2
    configure_backends(device)  # as a training worker: TF32 and cuDNN's autotuner on a GPU
    net, which = load_net(args.stylizer, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {name}; torch {torch.__version__}; precision {args.precision}; stylizer: {which}")
    results, failures = {}, []
    for size in args.sizes:
        batch = args.batch or (256 if size <= 32 else 64)
        run_args = argparse.Namespace(**{**vars(args), "batch": batch})
        for method in METHODS:
            for variant in VARIANTS:
                key = (size, method, variant)
                t = time.perf_counter()
                try:
                    results[key] = r = run_setting(method, variant, size, run_args, device, net)
                    print(f"{size:>4} px  {ARCH.get(size, 'resnet50'):<8} batch {batch:<4} {method:<8} {variant:<8}"
                          f"{r['images_per_s']:>9.1f} img/s  peak {_mib(r['peak_mib'])} MiB  loss {r['loss']:.3f}"
                          f"  ({time.perf_counter() - t:.0f} s)", flush=True)
                except Exception as e:  # noqa: BLE001 - report every setting, then fail
                    failures.append(key)
                    print(f"{size:>4} px  {method:<8} {variant:<8} FAILED: {type(e).__name__}: {e}", flush=True)
                    traceback.print_exc()
    why_not = import_timm(args.timm_wheel) if args.vit_sizes else None
    for size in args.vit_sizes if why_not is None else []:
        run_args = argparse.Namespace(**{**vars(args), "batch": args.vit_batch})
        for variant in VIT_VARIANTS:
            key = (size, VIT_METHOD[0], variant)
            t = time.perf_counter()
            try:
                results[key] = r = run_setting(VIT_METHOD[0], variant, size, run_args, device, net)
                print(f"{size:>4} px  {args.vit_arch}/{args.vit_patch} batch {args.vit_batch:<4} {VIT_METHOD[0]:<8} "
                      f"{variant:<8}{r['images_per_s']:>9.1f} img/s  peak {_mib(r['peak_mib'])} MiB  loss "
                      f"{r['loss']:.3f}  ({time.perf_counter() - t:.0f} s)", flush=True)
            except Exception as e:  # noqa: BLE001
                failures.append(key)
                print(f"{size:>4} px  {VIT_METHOD[0]:<8} {variant:<8} FAILED: {type(e).__name__}: {e}", flush=True)
                traceback.print_exc()
    if why_not is not None:
        print(f"MoCo v3 ViT settings SKIPPED: {why_not}", flush=True)
    if args.decode_images:
        try:
            d = check_decode(args, device)
            print(f"jpeg decode {args.decode_images} x 320x240 -> {args.decode_size} px: PIL (1 CPU thread) "
                  f"{d['pil']:.0f} img/s, torchvision on {device.type} {d['device']:.0f} img/s; crop boxes "
                  f"{'identical' if d['same_boxes'] else 'DIFFER'}; mean |pixel difference| {d['diff']:.2f}",
                  flush=True)
            if not d["same_boxes"] or d["bad"]:
                failures.append("decode")
        except Exception as e:  # noqa: BLE001
            failures.append("decode")
            print(f"jpeg decode FAILED: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
    if args.syncbn_batch:
        try:
            b = check_sync_bn(args, device)
            p, q = b["plain"], b["sync"]
            ratio = q["peak_mib"] / p["peak_mib"] if math.isfinite(p["peak_mib"]) else math.nan
            print(f"sync BN: resnet50 {args.syncbn_size} px batch {args.syncbn_batch} {args.precision}: plain BN peak "
                  f"{_mib(p['peak_mib']).strip()} MiB {p['seconds'] * 1e3:.0f} ms/step, sync BN peak "
                  f"{_mib(q['peak_mib']).strip()} MiB {q['seconds'] * 1e3:.0f} ms/step; ratio sync / plain: memory "
                  f"{ratio:.2f}, time {q['seconds'] / p['seconds']:.2f}", flush=True)
        except Exception as e:  # noqa: BLE001
            failures.append("sync_bn")
            print(f"sync BN FAILED: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
    for (size, method, variant), r in results.items():
        base = results.get((size, method, "default"))
        if variant != "default" and base:
            print(f"ratio {size} px {method}: {variant} / default = {r['images_per_s'] / base['images_per_s']:.2f}")
    if failures:
        print(f"{len(failures)} setting(s) failed: {failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
