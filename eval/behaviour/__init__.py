"""Model behaviour, not just decisions: what a CAM-ready model's layers respond to, from its ONNX
Runtime outputs alone (numpy, onnxruntime, scikit-learn; no torch).

- :mod:`~onnxcam.eval.behaviour.neighbours`: nearest neighbours in a layer's feature space and the
  neighbour-label agreement;
- :mod:`~onnxcam.eval.behaviour.embedding`: a seeded t-SNE map of those features and its
  trustworthiness;
- :mod:`~onnxcam.eval.behaviour.receptive_field`: the input box each unit of a layer sees, from the
  graph's kernels, strides, paddings and dilations;
- :mod:`~onnxcam.eval.behaviour.activations`: channel maps as a grid, maximally activating patches
  cropped to the receptive field;
- :mod:`~onnxcam.eval.behaviour.class_visualization`: the input a class scores highest for, by
  regularized gradient ascent on the model's input gradients.

``onnxcam inspect`` (docs/inspect.md) draws all of it as a page.
"""

from onnxcam.eval.behaviour.activations import (
    PatchHit,
    activation_grid,
    channel_peaks,
    check_channels,
    field_crop,
    max_activating_patches,
    top_patches,
)
from onnxcam.eval.behaviour.class_visualization import ClassVisualization, class_visualization, input_to_rgb
from onnxcam.eval.behaviour.embedding import Embedding, tsne_embedding
from onnxcam.eval.behaviour.neighbours import (
    Neighbours,
    chance_label_agreement,
    nearest_neighbours,
    neighbour_label_agreement,
    spatial_mean,
)
from onnxcam.eval.behaviour.receptive_field import ReceptiveField, ReceptiveFieldError, receptive_field

__all__ = [
    "ClassVisualization",
    "Embedding",
    "Neighbours",
    "PatchHit",
    "ReceptiveField",
    "ReceptiveFieldError",
    "activation_grid",
    "chance_label_agreement",
    "channel_peaks",
    "check_channels",
    "class_visualization",
    "field_crop",
    "input_to_rgb",
    "max_activating_patches",
    "nearest_neighbours",
    "neighbour_label_agreement",
    "receptive_field",
    "spatial_mean",
    "top_patches",
    "tsne_embedding",
]
