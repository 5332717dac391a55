"""Perceptual losses for training the style-transfer network (Ghiasi et al. 2017).

total = content_weight * content + style_weight * style + tv_weight * tv, with

* content: MSE between loss-network features of the stylized and the content image
  (mean over the content layers);
* style: MSE between Gram matrices of the stylized and the style image's features
  (mean over the style layers). Gram matrices are normalised by C*H*W, so they do not
  depend on the image size and the style image may be larger or smaller than the
  content image;
* tv: total variation (smoothness) of the stylized image.

The default weights (1, 0.5e-3, 1e4) are the paper's, which were set for 256 px images
and its VGG features; other loss networks, normalisations or sizes change the scale
of each term, so they may need retuning.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .loss_networks import LossNetwork

__all__ = ["PerceptualLoss", "content_loss", "gram_matrix", "style_loss", "total_variation"]

LayerWeights = Sequence[float] | Mapping[str, float] | None


def gram_matrix(f: Tensor) -> Tensor:
    """(B, C, H, W) features -> (B, C, C) Gram matrices F F^T / (C*H*W), computed in float32."""
    if f.dim() != 4:
        raise ValueError(f"gram_matrix expects (B, C, H, W) features, got {tuple(f.shape)}")
    b, c, h, w = f.shape
    flat = f.reshape(b, c, h * w).float()
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def _layer_weights(layers: Sequence[str], weights: LayerWeights) -> list[float]:
    if weights is None:
        return [1.0] * len(layers)
    if isinstance(weights, Mapping):
        return [float(weights.get(layer, 1.0)) for layer in layers]
    if len(weights) != len(layers):
        raise ValueError(f"{len(weights)} layer weights for {len(layers)} layers")
    return [float(w) for w in weights]


def _reduce(terms: list[Tensor], reduction: str) -> Tensor:
    if not terms:
        raise ValueError("no layers given")
    total = torch.stack(terms).sum()
    if reduction == "mean":
        return total / len(terms)
    if reduction == "sum":
        return total
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def content_loss(feats_out: Mapping[str, Tensor], feats_content: Mapping[str, Tensor],
                 layers: Sequence[str], *, weights: LayerWeights = None,
                 reduction: str = "mean") -> Tensor:
    """Mean (or sum) over ``layers`` of weight * MSE(features_out, features_content)."""
    ws = _layer_weights(layers, weights)
    return _reduce([w * F.mse_loss(feats_out[k].float(), feats_content[k].float())
                    for k, w in zip(layers, ws)], reduction)


def style_loss(feats_out: Mapping[str, Tensor], feats_style: Mapping[str, Tensor],
               layers: Sequence[str], *, weights: LayerWeights = None,
               reduction: str = "mean") -> Tensor:
    """Mean (or sum) over ``layers`` of weight * MSE(Gram(out), Gram(style)).

    The style batch must have the output's batch size (pairs), or 1 (one style for all).
    Spatial sizes may differ.
    """
    ws = _layer_weights(layers, weights)
    terms = []
    for k, w in zip(layers, ws):
        g_out, g_style = gram_matrix(feats_out[k]), gram_matrix(feats_style[k])
        if g_style.shape[0] == 1 and g_out.shape[0] != 1:
            g_style = g_style.expand_as(g_out)
        terms.append(w * F.mse_loss(g_out, g_style))
    return _reduce(terms, reduction)


def total_variation(x: Tensor) -> Tensor:
    """Mean squared difference between vertical and between horizontal neighbours, summed
    over the two directions and halved (TF ``l2_loss`` convention of the reference code).
    0 for a constant image."""
    if x.dim() != 4:
        raise ValueError(f"total_variation expects (B, C, H, W) images, got {tuple(x.shape)}")
    x = x.float()
    dy = x[:, :, 1:, :] - x[:, :, :-1, :]
    dx = x[:, :, :, 1:] - x[:, :, :, :-1]
    zero = x.new_zeros(())
    ty = dy.pow(2).mean() if dy.numel() else zero
    tx = dx.pow(2).mean() if dx.numel() else zero
    return 0.5 * (ty + tx)


class PerceptualLoss(nn.Module):
    """Content + style + total-variation loss on a frozen ``LossNetwork``.

    ``forward(stylized, content, style)`` takes images in [0, 1]; ``style`` may have a
    different spatial size (and batch size 1 or the same batch size). Returns the
    weighted ``total`` and the unweighted ``content``, ``style`` and ``tv`` terms
    (scalar tensors).
    """

    def __init__(self, net: LossNetwork, content_weight: float = 1.0, style_weight: float = 0.5e-3,
                 tv_weight: float = 1e4, *, content_layer_weights: LayerWeights = None,
                 style_layer_weights: LayerWeights = None, layer_reduction: str = "mean"):
        super().__init__()
        self.net = net
        self.content_weight = float(content_weight)
        self.style_weight = float(style_weight)
        self.tv_weight = float(tv_weight)
        self.content_layers = list(net.content_layers)
        self.style_layers = list(net.style_layers)
        self.content_layer_weights = content_layer_weights
        self.style_layer_weights = style_layer_weights
        if layer_reduction not in ("mean", "sum"):
            raise ValueError(f"layer_reduction must be 'mean' or 'sum', got {layer_reduction!r}")
        self.layer_reduction = layer_reduction

    def forward(self, stylized: Tensor, content: Tensor, style: Tensor) -> dict[str, Tensor]:
        f_out = self.net(stylized, self.net.layers)
        with torch.no_grad():  # targets: no graph through the frozen network
            f_content = self.net(content, self.content_layers)
            f_style = self.net(style, self.style_layers)
        lc = content_loss(f_out, f_content, self.content_layers, weights=self.content_layer_weights,
                          reduction=self.layer_reduction)
        ls = style_loss(f_out, f_style, self.style_layers, weights=self.style_layer_weights,
                        reduction=self.layer_reduction)
        ltv = total_variation(stylized)
        total = self.content_weight * lc + self.style_weight * ls + self.tv_weight * ltv
        return {"total": total, "content": lc, "style": ls, "tv": ltv}

    def extra_repr(self) -> str:
        return (f"content_weight={self.content_weight}, style_weight={self.style_weight}, "
                f"tv_weight={self.tv_weight}, layer_reduction={self.layer_reduction!r}")
