"""Whole-image inference with a segmentation network: tiles, stitching, instances, thresholds.

Networks see 256×256 tiles; images are larger (1024×704 analysed pixels for the BAM images) and of
any size. :func:`predict_probability` runs a U-Net over the whole image in one pass, or covers it
with tiles and stitches its particle probabilities:

``mode="whole"``
    One forward pass over the image mirrored at its right and bottom borders up to multiples of
    32 (as the tiles are padded), cropped back: every pixel sees all of its context. On the
    bundled examples it differs from ``"blend"`` by less than the tiling test's tolerance (at most
    0.013 % of the mask pixels, ``tests/predict/test_whole_image.py``), and it computes about 55 % of blend's
    FLOPs (no overlap is computed twice).
``mode="auto"`` (the default of :func:`segment`)
    ``"whole"`` when the padded image has at most :data:`WHOLE_LIMIT` pixels, else ``"blend"``
    (the whole pass needs memory in proportion to the pixels: see :data:`WHOLE_LIMIT`).
``mode="blend"`` (default)
    Tiles overlap by ``overlap`` pixels (the last tile of a row or column is placed flush with the
    border, as :func:`tio2fiji.transforms.tile_positions`). Each tile's probabilities are weighted
    by a raised-cosine (Hann) ramp over its overlapping margins
    (:func:`tio2fiji.transforms.tile_weights`), so every pixel is a smooth average that favours the
    tile whose centre is nearest, and tile seams, where the network sees the least context, do not
    show. Sides that lie on the image border are not tapered (no other tile covers them). Images
    smaller than a tile are mirrored up to the tile size.
``mode="thesis"``
    The thesis's way (§3.3): a grid of non-overlapping 256×256 tiles from the top-left corner; the
    image is mirrored at its right and bottom borders to fill the last tiles, and the result is
    cropped back to the image.

:func:`predict_instances` does the same for Mask R-CNN: it covers an image with overlapping
256×256 tiles, and every instance is kept from exactly one tile: the one whose *own region*
contains the centre of its box (the tiles' own regions split every overlap at its middle), so a
particle on a tile border comes whole from the tile that sees it best and is never duplicated.
Overlapping masks are resolved by score (:func:`tio2fiji.instances.paint_instances`): each pixel
belongs to the highest-scoring instance whose mask covers it.

Images are scaled by :func:`tio2fiji.transforms.normalize_for_network`, the same function that
prepared the training data. :func:`segment` runs either network on the analysed area of an SEM
image (data bar excluded) and turns its output into particles with the post-processing parameters
stored with the model (its :class:`tio2fiji.models.ModelSettings`, ``model.settings``). Model
files are read by :func:`tio2fiji.models.checkpoint.load_model`, which resolves those settings
once and returns a :class:`tio2fiji.models.Model` (the network and its settings); every function
here also takes a bare network, with the settings of a file that stores none.

``progress(done, total, name)`` callbacks are called after each batch of tiles, with ``name``
``"tile"`` (once, ``(1, 1)``, for a whole-image pass).

Devices and runtimes: the network runs where its parameters are (or on ``device``, which moves
it). On CUDA each batch goes to the GPU through pinned host memory with a non-blocking copy, and
the forward pass runs under float16 autocast (``amp``, on by default there; the maps are float32
either way). On the CPU the U-Net runs with ONNX Runtime by default (``engine="auto"``; measured
faster than PyTorch for the default model, ``benchmarks/speed/infer_speed.py``), in float32: bfloat16
autocast on the CPU is available (``amp=True``) but not the default (measured slower there).

Memory of large images: a whole-image pass holds the network's activations at once, about
500 bytes per pixel on the CPU (peak RSS of the pass measured at 1024×704, 2048×1536 and
4096×3072: 459-471 B/px with PyTorch, 524-554 with ONNX Runtime; 0.35 GB for a 1024×704 area,
1.6 GB at :data:`WHOLE_LIMIT`, 6-7 GB for 4096×3072), so ``"auto"`` tiles beyond
:data:`WHOLE_LIMIT`. Tiles are streamed (one batch at a time) and blended one row of tiles at a
time, so :func:`predict_maps` holds the float32 network input and result (4 bytes per pixel each,
per output map) plus about ``24 × tile × width`` bytes, and no full-size float64 copy: about
8 bytes per pixel for a one-map U-Net (0.5 GB for 8000×8000; a ``"star"`` model returns
``2 + n_rays`` maps, 4 bytes per pixel each). The post-processing of :func:`segment` (watershed,
labels) costs more: about 125 bytes per pixel at its peak, measured with ``benchmarks/speed/large_images.py``
(8 GB for 8000×8000); the time is about linear in the pixels. Images are limited by memory only.
"""
from ._maps import MODES, WHOLE_LIMIT, predict_maps, predict_probability, resolve_mode
from ._maskrcnn import detect, predict_instances, tiled_detections
from ._segment import SCALE_RANGE, SCALE_TOLERANCE, SCALES, Segmentation, particles_on_grid, segment, working_scale

__all__ = ["MODES", "WHOLE_LIMIT", "predict_maps", "predict_probability", "resolve_mode", "detect",
           "tiled_detections", "predict_instances", "segment", "Segmentation", "SCALES", "SCALE_RANGE",
           "SCALE_TOLERANCE", "particles_on_grid", "working_scale"]
