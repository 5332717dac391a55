"""Batched on-device two-view augmentations (BYOL / SASSL / CASSLE)."""

from .batched import CroppedViews, TwoViewAugment, denormalize
from ..spec import ViewConfig

__all__ = ["ViewConfig", "TwoViewAugment", "CroppedViews", "denormalize"]
