"""Batched on-device two-view augmentations (BYOL / SASSL / CASSLE)."""

from .kernels import denormalize
from .two_views import CroppedViews, TwoViewAugment
from ..spec import ViewConfig

__all__ = ["ViewConfig", "TwoViewAugment", "CroppedViews", "denormalize"]
