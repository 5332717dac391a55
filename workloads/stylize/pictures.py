"""Picture grids for style transfer: shapes must survive, texture and colour must change."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from ..visualize import make_grid, save_image

from .augment import StyleAugment, resize
from .preview import stylize_pairs

# (α, β) columns shown: mild as in SASSL, then full style strength without and with interpolation
SETTINGS = ((0.2, 1.0), (0.6, 1.0), (1.0, 1.0), (1.0, 0.3))


def _tiles(columns: list[torch.Tensor], upscale_to: int) -> torch.Tensor:
    tiles = torch.stack(columns, dim=1).flatten(0, 1).clamp(0, 1).cpu()
    if tiles.shape[-1] < upscale_to:  # 32 px tiles are too small to judge by eye
        tiles = F.interpolate(tiles, size=(upscale_to, upscale_to), mode="nearest")
    return tiles


@torch.no_grad()
def save_style_grid(x_uint8: torch.Tensor, hook: StyleAugment, size: int, path: str | Path,
                    n: int = 8, final: torch.Tensor | None = None) -> Path:
    """Rows: content | stylized at each (α, β) of SETTINGS | α, β as sampled in training | final view."""
    content = x_uint8[:n].float().div(255.0)
    if content.shape[-1] != size:
        content = F.interpolate(content, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    net, dev = hook.net, next(hook.net.parameters()).device
    content = content.to(dev)
    work = hook.resize(content)  # the stylizer's working size, as in training
    z_c = net.embed(work)
    if hook.source == "external":
        z_s = hook.bank[torch.arange(len(content), device=dev) % len(hook.bank)]
    elif hook.source == "in_batch":
        z_s = z_c.roll(-hook.shift, dims=0)
    elif hook.source == "noise":
        z_s = torch.randn(z_c.shape, generator=torch.Generator(device=dev).manual_seed(1), device=dev)
    else:
        z_s = z_c
    columns = [content]
    for alpha, beta in SETTINGS:
        z = alpha * z_s + (1 - alpha) * z_c
        t = net.transformer(work, z, z_content=z_c, stylized_layers=hook.stylized_layers)
        t = hook.resize(t, content.shape[-2:]).clamp(0, 1)
        columns.append(beta * t + (1 - beta) * content)
    # the sampled column draws with a copy of the hook (its own p and generator): the training
    # hook is in use by the prefetch thread meanwhile, so it must not change, not even for a moment
    columns.append(_drawing_copy(hook, dev)(content))
    labels = ["content"] + [f"a={a:g} b={b:g}" for a, b in SETTINGS] + ["sampled a, b"]
    if final is not None:
        columns.append(final[:n].to(dev))
        labels.append("final view")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(_tiles(columns, 96), nrow=len(columns), padding=2, pad_value=1.0), path)
    _label_columns(path, labels, tile=96 + 2)
    return path


def _drawing_copy(hook: StyleAugment, device: torch.device) -> StyleAugment:
    """The hook with p = 1 and a generator of its own; the network and bank are shared (read only)."""
    mine = copy.copy(hook)
    mine.p, mine.generator, mine.last = 1.0, torch.Generator(device=device).manual_seed(0), None
    return mine


def _label_columns(path: Path, labels: list[str], tile: int) -> None:
    """A white strip on top naming each column (a=α, b=β), so the grid reads without a legend."""
    from PIL import Image, ImageDraw
    grid = Image.open(path).convert("RGB")
    out = Image.new("RGB", (grid.width, grid.height + 14), "white")
    out.paste(grid, (0, 14))
    draw = ImageDraw.Draw(out)
    for i, text in enumerate(labels):
        draw.text((i * tile + 4, 2), text[:16], fill=(0, 0, 0))
    out.save(path)


@torch.no_grad()
def save_content_style_grid(net, contents: torch.Tensor, styles: torch.Tensor, path: str | Path,
                            upscale_to: int = 96, work_size: int | None = None) -> Path:
    """First row: the style images; first column: the contents; cell (i, j) = content i in style j.

    ``work_size``: stylize at this size and bring the result back to the contents' size (as
    SASSL does with small crops); the styles are embedded at their own size."""
    out = stylize_pairs(net, contents, styles, work_size=work_size)
    blank = torch.ones_like(contents[:1])
    rows = [torch.cat([blank, resize(styles, contents.shape[-2:])])]
    rows += [torch.cat([contents[i:i + 1], out[i]]) for i in range(len(contents))]
    tiles = torch.cat(rows).clamp(0, 1).cpu()
    if tiles.shape[-1] < upscale_to:
        tiles = F.interpolate(tiles, size=(upscale_to, upscale_to), mode="bilinear", align_corners=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(tiles, nrow=len(styles) + 1, padding=2, pad_value=1.0), path)
    return path
