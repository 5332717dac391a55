"""Fast arbitrary style transfer network (Ghiasi et al. 2017) used by SASSL."""

from .model import (
    NUM_CIN_LAYERS,
    VALID_STYLIZED_LAYERS,
    ConditionalInstanceNorm,
    StylePredictor,
    StyleTransferNet,
    StyleTransformer,
    load_stylizer,
    register_predictor_trunk,
    save_stylizer,
    validate_stylized_layers,
)

__all__ = [
    "NUM_CIN_LAYERS",
    "VALID_STYLIZED_LAYERS",
    "ConditionalInstanceNorm",
    "StylePredictor",
    "StyleTransformer",
    "StyleTransferNet",
    "load_stylizer",
    "register_predictor_trunk",
    "save_stylizer",
    "validate_stylized_layers",
]
