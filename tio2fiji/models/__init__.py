"""Segmentation networks: the factories and the model files.

* :mod:`~tio2fiji.models.unet`: the U-Net family of the thesis (Tables 6-7);
* :mod:`~tio2fiji.models.maskrcnn`: Mask R-CNN with the thesis's changes (Table 3);
* :mod:`~tio2fiji.models.weights`: local ResNet weight files for their encoders/backbones;
* :mod:`~tio2fiji.models.device`: which torch device ``--device`` names (``auto``: CUDA when present),
  threads per worker, and how a forward pass runs there (mixed precision, pinned copies, ONNX Runtime);
* :mod:`~tio2fiji.models.checkpoint`: the one reader and writer of model files (training
  checkpoints and compact files, with the post-processing parameters stored next to the weights);
* :mod:`~tio2fiji.models.settings`: those parameters as one typed object (``ModelSettings``),
  resolved once on loading, and ``Model``: a network with its settings (what ``load_model`` returns).

Running a network on images is :mod:`tio2fiji.predict`; training it is :mod:`tio2fiji.training`.
"""

from .checkpoint import DEFAULT_MODEL, export_model, load_checkpoint, load_model, model_arch, save_checkpoint
from .device import DEVICE_CHOICES, resolve_device, torch_threads
from .settings import Model, ModelSettings, Provenance, as_model
from .unet import CONFIGS, ENCODERS, build_config, build_unet, parse_config

__all__ = ["CONFIGS", "ENCODERS", "build_config", "build_unet", "parse_config", "DEFAULT_MODEL",
           "load_model", "export_model", "load_checkpoint", "save_checkpoint", "model_arch",
           "Model", "ModelSettings", "Provenance", "as_model", "DEVICE_CHOICES", "resolve_device", "torch_threads"]
