"""SIPL — style-invariant patch localization (docs/methods.md, SIPL): pure-PyTorch data plane.

patches: 3×3-grid patch pairs + chromatic-aberration removal; augment: ReLIC transforms and
the variants' problem pairing; model: SiplNet + loss; data: pretext images (in memory or
streamed); train: pretext loop; downstream: frozen encoder + MLP head; embeddings: style/class
embedding analysis (Figure 4).
"""
from .augment import VARIANTS, SiplAugment, make_problems, relic_augment
from .downstream import downstream_mlp
from .model import SiplNet, sipl_loss, symmetric_kl
from .patches import remove_chromatic_aberration, sample_pairs
from .train import pretrain_sipl

__all__ = ["sample_pairs", "remove_chromatic_aberration", "SiplAugment", "VARIANTS",
           "relic_augment", "make_problems", "SiplNet", "symmetric_kl", "sipl_loss",
           "pretrain_sipl", "downstream_mlp"]
