"""Dataset layer: lazy image sources (embedded kits, torchvision, folders), splits, in-memory loading.

Pure PyTorch/PIL/numpy on purpose: workers import it without ray or mlflow.
"""
from .errors import DatasetError
from .memory import load_in_memory
from .registry import DATASETS, open_source
from .sources import ImageSource
from .splits import class_balanced_subset, load_split, save_split, stratified_split

__all__ = ["open_source", "load_in_memory", "stratified_split", "class_balanced_subset", "save_split",
           "load_split", "DatasetError", "DATASETS", "ImageSource"]
