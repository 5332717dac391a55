"""Vision Transformers from timm with MoCo v3's choices (docs/methods.md, "Vision Transformers").

timm's ``VisionTransformer`` is the network; this module sets it up as MoCo v3 trains it
(Chen, Xie & He 2021, §4 and its code):

* ``pos_embed="sincos"``: a fixed 2-D sine-cosine position embedding (not trained): a quarter
  of the channels each for sin and cos of the column and of the row index, at frequencies
  1/10000^(i/(D/4)); the class token's entry is zero. ``"learned"``: timm's trained embedding;
* ``frozen_patch_embed``: the patch projection stays at its random initialisation (the paper's
  "stop-gradient on the patch projection" that removes the training instability of §4.1);
* ``init="moco"``: Xavier-uniform Linear layers with Q, K and V each initialised as its own
  matrix (timm's ``moco`` mode), the patch projection uniform in ±sqrt(6 / (3·p² + D)) as a
  Linear from a flattened patch, the class token N(0, 1e-6²); ``"timm"``: timm's default;
* 12 heads for ViT-Small (timm has 6; MoCo v3's ViT-S has 12), 3 for Tiny, 12 for Base.

The representation is the class token after the final LayerNorm; ``out_dim`` is its size, so
the probes, AugSelf's heads and CASSLE's projector read it as they read a ResNet's pooled
feature. timm is imported when a ViT is built: it imports torchvision (seconds of CPU), which
a ResNet cell does not need.
"""
from __future__ import annotations

import math

import torch
from torch import nn

# size -> (embedding dim, depth, heads as MoCo v3 uses them)
VIT_SIZES = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 12), "vit_base": (768, 12, 12)}
POS_EMBEDS = ("sincos", "learned")
VIT_INITS = ("moco", "timm")


def sincos_2d(grid: int, dim: int, temperature: float = 10_000.0) -> torch.Tensor:
    """(grid², dim) fixed position embedding of a grid×grid token map in row-major order:
    [sin(col·ω), cos(col·ω), sin(row·ω), cos(row·ω)] with ω_i = 1 / temperature^(i / (dim/4))."""
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos position embedding needs a dimension divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                                indexing="ij")
    c = cols.flatten()[:, None] * omega[None]
    r = rows.flatten()[:, None] * omega[None]
    return torch.cat([c.sin(), c.cos(), r.sin(), r.cos()], dim=1).float()


class ViTBackbone(nn.Module):
    """A timm ViT returning the class token's feature (B × ``out_dim``)."""

    def __init__(self, arch: str = "vit_small", image_size: int = 224, patch_size: int = 16,
                 depth: int | None = None, num_heads: int | None = None, pos_embed: str = "sincos",
                 frozen_patch_embed: bool = True, init: str = "moco"):
        super().__init__()
        if arch not in VIT_SIZES:
            raise ValueError(f"unknown ViT {arch!r}; choose one of {sorted(VIT_SIZES)}")
        if pos_embed not in POS_EMBEDS:
            raise ValueError(f"pos_embed must be one of {', '.join(POS_EMBEDS)}; got {pos_embed!r}")
        if init not in VIT_INITS:
            raise ValueError(f"init must be one of {', '.join(VIT_INITS)}; got {init!r}")
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
        dim, default_depth, default_heads = VIT_SIZES[arch]
        heads = num_heads or default_heads
        if dim % heads:
            raise ValueError(f"{arch}'s width {dim} is not divisible by {heads} heads")
        from timm.models.vision_transformer import VisionTransformer

        self.vit = VisionTransformer(
            img_size=image_size, patch_size=patch_size, embed_dim=dim, depth=depth or default_depth,
            num_heads=heads, num_classes=0, global_pool="token", class_token=True,
            weight_init=init if init == "moco" else "")
        self.out_dim = dim
        self.grid = image_size // patch_size
        if init == "moco":
            proj = self.vit.patch_embed.proj
            bound = math.sqrt(6.0 / (3 * patch_size * patch_size + dim))
            nn.init.uniform_(proj.weight, -bound, bound)
            nn.init.zeros_(proj.bias)
        if pos_embed == "sincos":
            with torch.no_grad():
                self.vit.pos_embed.copy_(torch.cat([torch.zeros(1, dim), sincos_2d(self.grid, dim)])[None])
            self.vit.pos_embed.requires_grad_(False)
        if frozen_patch_embed:
            self.vit.patch_embed.proj.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x)
