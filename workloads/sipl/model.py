"""SIPL network (paper Table 1, Figure 1) and loss (Eq. 1).

encoder: ResNet trunk + linear to the embedding (1000-d in the paper); head: MLP on the
concatenated centre/neighbour embeddings [C, N] → 8 positions. One hidden layer keeps
the head shallow, which the paper uses against dimensional collapse.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.backbones import build_backbone

__all__ = ["SiplNet", "symmetric_kl", "sipl_loss"]


class SiplNet(nn.Module):
    def __init__(self, arch: str = "resnet18", width: float = 1.0, stem: str = "imagenet",
                 embed_dim: int = 1000, head_hidden: int = 4096):
        super().__init__()
        if embed_dim < 1 or head_hidden < 1:
            raise ValueError(f"embed_dim and head_hidden must be >= 1, got {embed_dim}, {head_hidden}")
        backbone = build_backbone(arch, width, stem)
        self.encoder = nn.Sequential(backbone, nn.Linear(backbone.out_dim, embed_dim))
        self.head = nn.Sequential(nn.Linear(2 * embed_dim, head_hidden), nn.ReLU(inplace=True),
                                  nn.Linear(head_hidden, 8))
        self.embed_dim = embed_dim

    def forward(self, centre: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        return self.classify(self.encoder(centre), self.encoder(neighbour))

    def classify(self, c: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat((c, n), dim=1))

    def problem_logits(self, problems: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """Logits of each (c, n) problem; every distinct patch tensor is encoded once, all in one batch
        (the shared centre of siplv1/v3 is not encoded twice)."""
        uniq: dict[int, int] = {}
        tensors: list[torch.Tensor] = []
        for pair in problems:
            for t in pair:
                if id(t) not in uniq:
                    uniq[id(t)] = len(tensors)
                    tensors.append(t)
        x = torch.cat(tensors).contiguous(memory_format=torch.channels_last)
        emb = self.encoder(x).split([t.shape[0] for t in tensors])
        return [self.classify(emb[uniq[id(c)]], emb[uniq[id(n)]]) for c, n in problems]


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """KL(f1‖f2) + KL(f2‖f1) of the softmaxes, summed over classes, mean over the batch."""
    la, lb = F.log_softmax(logits_a, dim=1), F.log_softmax(logits_b, dim=1)
    # (p_a - p_b)·(log p_a - log p_b) is the sum of both directions
    return ((la.exp() - lb.exp()) * (la - lb)).sum(dim=1).mean()


def sipl_loss(model: SiplNet, problems: list[tuple[torch.Tensor, torch.Tensor]], labels: torch.Tensor,
              alpha: float) -> tuple[torch.Tensor, float]:
    """OPL (one problem): CE. SIPL (two): CE(f1, y) + CE(f2, y) + α·symmetric_kl(f1, f2).

    Returns (loss, accuracy in % of the first problem)."""
    if not alpha >= 0:
        raise ValueError(f"alpha weighs the style-invariance KL term and must be >= 0, got {alpha!r}")
    if len(problems) not in (1, 2):
        raise ValueError(f"expected 1 (OPL) or 2 (SIPL) problems, got {len(problems)}")
    logits = model.problem_logits(problems)
    loss = sum(F.cross_entropy(lg, labels) for lg in logits)
    if len(logits) == 2:
        loss = loss + alpha * symmetric_kl(logits[0], logits[1])
    acc = 100.0 * (logits[0].argmax(dim=1) == labels).float().mean().item()
    return loss, acc
