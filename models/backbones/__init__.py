"""Frame (2D) and clip (3D) feature extractors, their input normalisation, and a registry by name.

Every backbone is an ``nn.Module`` with ``out_dim``, ``kind`` ("2d" or "3d"), ``input_size``
(the training resolution) and ``normalization`` (the default scheme of ``NormalizeInput``).
2D: float [N, 3, H, W] -> [N, out_dim]. 3D: float [N, 3, T, H, W] -> [N, out_dim].
"""

from models.backbones.normalize import SCHEME_NAMES, NormalizeClips, NormalizeInput
from models.backbones.registry import BACKBONE_NAMES, build_backbone

__all__ = ["BACKBONE_NAMES", "SCHEME_NAMES", "NormalizeClips", "NormalizeInput", "build_backbone"]
