"""`sassl stylize`: see what the style augmentation does to your images before a long run.

Reads content and style images (a file or a folder each), stylizes every content image in
every style with SASSL's two knobs (feature blending α, pixel interpolation β), and writes a
content × style grid (first row: the styles; first column: the contents) and, if asked, one
PNG per pair."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..visualize import make_grid, save_image

from .augment import resize

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class PreviewInputError(ValueError):
    """A missing, empty or unreadable input; the message names the path."""


def _square(img, size: int) -> torch.Tensor:
    """PIL image -> float (3, size, size) in [0, 1]: centre crop to a square, then resize."""
    from torchvision.transforms.functional import center_crop, pil_to_tensor
    x = pil_to_tensor(img.convert("RGB")).float().div(255)
    side = min(x.shape[-2:])
    x = center_crop(x, [side, side])[None]
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


def read_images(path: str | Path, size: int, what: str) -> tuple[list[str], torch.Tensor]:
    """(names, float N×3×size×size) from an image file or a folder of them (sorted by name)."""
    from PIL import Image, UnidentifiedImageError
    p = Path(path).expanduser()
    if not p.exists():
        raise PreviewInputError(f"{what}: {p} does not exist")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else [p]
    if not files:
        raise PreviewInputError(f"{what}: {p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    names, images = [], []
    for f in files:
        try:
            with Image.open(f) as img:
                images.append(_square(img, size))
        except (UnidentifiedImageError, OSError) as e:
            raise PreviewInputError(f"{what}: {f} is not a readable image ({e})") from None
        names.append(f.stem)
    return names, torch.stack(images)


@torch.no_grad()
def stylize_pairs(net, content: torch.Tensor, style: torch.Tensor, *, alpha: float = 1.0, beta: float = 1.0,
                  work_size: int | None = None) -> torch.Tensor:
    """(n_content, n_style, 3, H, W): content i in style j, as SASSL makes it:
    z = α·P(style) + (1 − α)·P(content), x = β·T(content, z) + (1 − β)·content, with T run at
    ``work_size`` (None: the contents' size) and its output brought back to the contents' size."""
    if not (0 <= alpha <= 1 and 0 <= beta <= 1):
        raise ValueError(f"alpha and beta must lie in [0, 1], got {alpha} and {beta}")
    net = net.eval()
    size = content.shape[-1]
    work = resize(content, work_size or size)
    z_c, z_s = net.embed(work), net.embed(style)
    rows = []
    for i in range(len(content)):
        z = alpha * z_s + (1 - alpha) * z_c[i:i + 1]
        t = resize(net.transformer(work[i:i + 1].expand(len(style), -1, -1, -1), z), size).clamp(0, 1)
        rows.append(beta * t + (1 - beta) * content[i:i + 1])
    return torch.stack(rows)


def write_grid(content: torch.Tensor, style: torch.Tensor, out: torch.Tensor, path: str | Path,
               tile: int = 128) -> Path:
    """First row: the styles; first column: the contents; cell (i, j): content i in style j."""
    size = content.shape[-1]
    blank = torch.ones(1, 3, size, size)
    rows = [torch.cat([blank, resize(style, size)])]
    rows += [torch.cat([content[i:i + 1], out[i]]) for i in range(len(content))]
    tiles = torch.cat(rows)
    if size < tile:  # small images are hard to judge at their own size
        tiles = F.interpolate(tiles, size=(tile, tile), mode="nearest")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(tiles, nrow=len(style) + 1, padding=2, pad_value=1.0), path)
    return path


def write_pairs(content_names: list[str], style_names: list[str], out: torch.Tensor, folder: str | Path) -> list[Path]:
    """One PNG per (content, style) pair, named <content>__<style>.png, at the contents' size."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, c in enumerate(content_names):
        for j, s in enumerate(style_names):
            p = folder / f"{c}__{s}.png"
            save_image(out[i, j], p)
            paths.append(p)
    return paths
