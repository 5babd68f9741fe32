"""Segmentation of an SEM image: the network's output turned into particles with the
post-processing stored with the model; see :mod:`tio2fiji.predict`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..instances import (
    CONNECTIVITY,
    OWN_LINES,
    OWN_SEPARATION,
    SEPARATE,
    add_unseeded,
    connected_components,
    drop_small,
    labels_from_maps,
    labels_to_separated_mask,
    particle_scores,
    remove_touching,
)
from ..io import SemImage, paint_out, read_sem
from ..models.checkpoint import load_model, model_arch
from ..models.device import choose_engine, resolve_device, use_amp
from ..models.settings import ModelSettings, as_model
from ..transforms import (
    SCALE_RANGE,
    SCALE_TOLERANCE,
    SCALES,
    TILE,
    resample_image,
    resample_labels,
    resample_map,
    scale_warning,
    scaled_shape,
)
from ._maps import MODES, predict_maps, resolve_mode
from ._maskrcnn import predict_instances

__all__ = ["SCALE_TOLERANCE", "SCALE_RANGE", "SCALES", "Segmentation", "segment", "particles_on_grid",
           "working_scale"]


# segmentation of an SEM image


@dataclass
class Segmentation:
    """What :func:`segment` returns for one image (all arrays cover the analysed area only).

    Attributes
    ----------
    probability : ndarray of float32
        Particle probability per pixel.
    mask : ndarray of bool
        ``probability > threshold``.
    threshold : float
    data_bar_rows : int
        Rows removed at the bottom of the full frame (0 for a plain array).
    pixel_size_m : float or None
        The image's calibration (for the measurements downstream).
    info : dict
        How it was made (tile, overlap, mode, separation).
    labels : ndarray of uint32
        The particles: 0 = background, 1..n (touching particles split as ``separate`` says).
    scores : ndarray of float32
        ``scores[i - 1]``: confidence of particle ``i`` (mean probability for the U-Net, the
        detection score for Mask R-CNN).
    """

    probability: np.ndarray
    mask: np.ndarray
    threshold: float = 0.5
    data_bar_rows: int = 0
    pixel_size_m: float | None = None
    info: dict = field(default_factory=dict)
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None


def segment(model, sem_image, threshold: float | None = None, tile: int = TILE, overlap: int = 64,
            batch_size: int = 4, mode: str = "auto", data_bar_rows: int | None = None,
            separate: str = "auto", connectivity: int = CONNECTIVITY, progress=None, device=None,
            amp: bool | None = None, engine: str = "auto", tta: bool = False, scale: str = "model") -> Segmentation:
    """Probability map, binary particle mask and particles of the analysed area of an SEM image.

    Parameters
    ----------
    model : Model, torch.nn.Module, str or path
        A loaded model (:func:`tio2fiji.models.checkpoint.load_model`: the network and its
        settings, which give every default below), anything ``load_model`` accepts
        (``"default"``), or a bare network (the settings of a file that stores none).
    sem_image : SemImage, path, or ndarray
        An image read by :func:`tio2fiji.io.read_sem` (its data bar is excluded), a file (read with
        ``read_sem``), or a 2-D array taken as the analysed area as it is.
    threshold : float, optional
        Pixels with probability above it are particle. Default: the threshold stored with the
        model (``model.settings.threshold``; chosen on the validation images), else 0.5.
    tile, overlap, batch_size, amp, engine
        As :func:`predict_probability`.
    mode : {"auto", "whole", "blend", "thesis"}
        The U-Net's: as :func:`predict_probability`; ``"auto"`` (default) is one whole-image pass
        up to :data:`WHOLE_LIMIT` pixels, blended tiles beyond. Mask R-CNN always runs on its
        256×256 training tile size (``"auto"`` or ``"blend"``; ``"whole"`` is refused).
    device : str or torch.device, optional
        Where the network runs (:func:`tio2fiji.models.resolve_device`; a loaded model is moved
        there). Default: where the model is (a model file: ``"auto"``, the GPU when present).
    data_bar_rows : int, optional
        For a path: the data-bar height (detected when None).
    separate : {"auto", "watershed", "none"}
        How the U-Net's mask becomes particles (:mod:`tio2fiji.instances`): ``"watershed"`` splits
        touching particles (with the watershed parameters stored with the model, else
        :data:`tio2fiji.instances.WATERSHED_DEFAULTS`), ``"none"`` keeps connected components
        (``connectivity``). ``"auto"``: the model's own way: star-convex particles for a
        ``"star"`` U-Net (:func:`tio2fiji.instances.labels_from_star` with its stored parameters),
        watershed for a one-output U-Net; Mask R-CNN's own instances (its only option; their
        detection score threshold is the one stored with the model).
    connectivity : {4, 8}
        Connected components with ``separate="none"``.
    progress : callable, optional
        ``progress(done, total, "tile")`` after each batch of tiles.
    tta : bool
        U-Net: test-time augmentation, the maps averaged over the 8 flips and quarter turns
        (:func:`predict_maps`); 8 times the network's time.
    scale : {"model", "none"}
        ``"model"`` (default): a calibrated image whose pixel size differs from the one the model
        was trained at (``model.settings.pixel_size_m``) by more than :data:`SCALE_TOLERANCE` is resampled to it
        (:func:`tio2fiji.transforms.resample_image`), the network and the particle rule run
        there, and the particles are brought back to the image's own grid
        (:func:`particles_on_grid`), where they are measured. An uncalibrated image (or ``"none"``)
        is segmented as it is. ``info["scale"]`` says what was done.

    A U-Net's particles under the model's smallest particle
    (``model.settings.min_particle_px`` pixels at its pixel size, converted to this image's) are
    dropped from the labels and the mask; ``info["min_particle"]`` says the bound and how many.

    Returns
    -------
    Segmentation
    """
    if isinstance(model, (str, Path)):
        model = load_model(model, device=resolve_device(device))
    elif device is not None:
        model = as_model(model).to(resolve_device(device))
    model = as_model(model)
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")
    post = model.settings
    if threshold is None:
        threshold = post.threshold
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be in [0, 1], got {threshold}.")
    if isinstance(sem_image, (str, Path)):
        sem_image = read_sem(sem_image, data_bar_rows=data_bar_rows)
    annotations = None
    if isinstance(sem_image, SemImage):
        area, bar, ps = sem_image.analysed, sem_image.data_bar_rows, sem_image.pixel_size_m
        annotations = sem_image.annotation_mask
        area = paint_out(area, annotations)  # the network does not see the marks as particles
    else:
        area, bar, ps = np.asarray(sem_image), 0, None
    if scale not in SCALES:
        raise InputError(f"scale must be one of {', '.join(SCALES)}, not {scale!r}.")
    if separate not in SEPARATE:
        raise InputError(f"separate must be {', '.join(SEPARATE)}; not {separate!r}.")
    info = {"tile": tile, "overlap": overlap, "mode": mode}
    if model_arch(model) == "maskrcnn":
        if separate != "auto":
            raise InputError(f"Mask R-CNN finds its own particles; separate={separate!r} does not apply "
                             f"(use 'auto').")
        if mode == "whole":
            raise InputError("Mask R-CNN runs on the 256x256 tiles it was trained on; mode 'whole' is "
                             "for the U-Net (use 'auto').")
        if tta:
            raise InputError("test-time augmentation (--tta) is for the U-Net; the Mask R-CNN runs "
                             "without it.")
        info.update(mode="tiles" if mode == "auto" else mode, device=str(next(model.net.parameters()).device))
        # the detection score threshold stored with the model (the one its validation IoU used)
        score_threshold = post.score_threshold
        work, factor = _at_model_scale(area, ps, post, scale, info)
        labels, scores, prob = predict_instances(model.net, work, tile=tile, overlap=overlap,
                                                 batch_size=batch_size, mask_threshold=threshold,
                                                 score_threshold=score_threshold, progress=progress,
                                                 max_overlap=post.max_overlap)
        if factor is not None:
            labels, prob = particles_on_grid(labels, prob, area.shape, threshold)
            scores = particle_scores(labels, prob)
        info.update(arch="maskrcnn", separate="instances", score_threshold=score_threshold,
                    max_overlap=post.max_overlap)
        labels, scores = _leave_out(labels, scores, annotations, sem_image, info)
        return Segmentation(probability=prob, mask=labels > 0, threshold=float(threshold),
                            data_bar_rows=int(bar), pixel_size_m=ps, info=info,
                            labels=labels.astype(np.uint32), scores=np.asarray(scores, np.float32))
    dev = next(model.net.parameters()).device
    amp = use_amp(dev, amp)
    work, factor = _at_model_scale(area, ps, post, scale, info)
    info.update(mode=resolve_mode(mode, *work.shape), device=str(dev), amp=amp,
                engine=choose_engine(model, dev, engine, amp))
    maps = predict_maps(model, work, tile=tile, overlap=overlap, batch_size=batch_size, mode=info["mode"],
                        outputs=post.outputs, progress=progress, amp=amp, engine=engine, tta=tta)
    info["tta"] = bool(tta)
    prob = maps[0]
    method = OWN_SEPARATION.get(post.outputs, "watershed") if separate == "auto" else separate
    params = post.params(method)
    labels, mask, method = labels_from_maps(maps, post.outputs, threshold, method, params, connectivity)
    if factor is not None:
        labels, prob = particles_on_grid(labels, prob, area.shape, threshold)
        mask = labels > 0
    labels, mask = _drop_small_particles(labels, mask, ps, post, info)
    info.update(arch="unet", separate=method, **({"outputs": method} if method in OWN_LINES else {}),
                **({method: params} if params else {"connectivity": connectivity}))
    if annotations is not None:
        kept, _ = _leave_out(labels, None, annotations, sem_image, info)
        mask = mask & ~((labels > 0) & (kept == 0)) & ~annotations  # the dropped particles' pixels too
        labels = kept
    return Segmentation(probability=prob, mask=mask,
                        threshold=float(threshold), data_bar_rows=int(bar), pixel_size_m=ps, info=info,
                        labels=labels, scores=particle_scores(labels, prob).astype(np.float32))


def _drop_small_particles(labels, mask, ps, settings, info):
    """The particles under the model's smallest (``settings.min_particle_px`` at its pixel size,
    converted to this image's: ``ps``, or the model's for an uncalibrated image) leave the labels
    and the mask; ``info["min_particle"]`` says the bound and how many were dropped."""
    if settings.min_particle_px <= 1:
        return labels, mask
    ratio = 1.0 if ps is None else (settings.pixel_size_m / ps) ** 2
    bound = settings.min_particle_px * ratio
    kept = drop_small(labels, int(np.ceil(bound - 1e-9)))
    info["min_particle"] = {"pixels": round(float(bound), 3), "model_pixels": settings.min_particle_px,
                            "nm2": round(settings.min_particle_px * (settings.pixel_size_m * 1e9) ** 2, 1),
                            "dropped": int(labels.max()) - int(kept.max())}
    return kept, mask & ~((labels > 0) & (kept == 0))


def _leave_out(labels, scores, annotations, sem_image, info):
    """Drop the particles beside an image's annotations and say so in ``info``."""
    if annotations is None:
        return labels, scores
    labels, scores, removed = remove_touching(labels, annotations, scores)
    info["annotations"] = {"source": sem_image.annotation_source, "pixels": int(annotations.sum()),
                           "particles_removed": int(removed)}
    return labels, scores


def working_scale(pixel_size_m, settings: ModelSettings, scale: str = "model") -> dict:
    """What :func:`segment` does with an image's scale at a model's (``settings.pixel_size_m``,
    ``settings.pixel_size_source``): ``{"resampled", "factor", "image_nm", "model_nm",
    "model_pixel_size", "why"[, "warning"]}``; ``factor`` = image pixel size / model pixel size
    (the image is resampled by it: > 1 enlarges coarse pixels)."""
    model_nm = settings.pixel_size_m * 1e9
    out = {"resampled": False, "factor": 1.0, "image_nm": None if pixel_size_m is None else pixel_size_m * 1e9,
           "model_nm": model_nm, "model_pixel_size": settings.pixel_size_source}
    if scale == "none":
        return {**out, "why": "scale 'none': segmented at the image's own pixel size"}
    if pixel_size_m is None:
        return {**out, "why": "uncalibrated image: segmented at its own pixel size (the model's is "
                              f"{model_nm:.4g} nm; give --pixel-size to bring it there)"}
    factor = float(pixel_size_m) / float(settings.pixel_size_m)
    out["factor"] = factor
    if abs(factor - 1.0) <= SCALE_TOLERANCE:
        return {**out, "why": f"within {SCALE_TOLERANCE:.0%} of the model's pixel size"}
    out.update(resampled=True, why="resampled to the model's pixel size, particles brought back")
    warning = scale_warning(pixel_size_m, settings.pixel_size_m)
    if warning:
        out["warning"] = warning
    return out


def _at_model_scale(area, ps, settings, scale, info):
    """``(image the network sees, factor or None)``; ``info["scale"]`` records the choice."""
    info["scale"] = working_scale(ps, settings, scale)
    if not info["scale"]["resampled"]:
        return area, None
    factor = info["scale"]["factor"]
    shape = scaled_shape(area.shape, factor)
    info["scale"]["working_shape"] = [int(n) for n in shape]
    return resample_image(area, shape), factor


def particles_on_grid(labels, probability, shape, threshold: float):
    """Particles found at another scale brought to an image grid of ``shape``.

    The probability is resampled (bilinear), its pixels above ``threshold`` are the particle mask,
    each mask pixel takes the label of its nearest resampled particle pixel (a watershed of the
    probability from the nearest-neighbour labels), mask components no particle reaches become
    particles of their own, and touching particles are cut apart by one-pixel lines as everywhere
    else (:func:`tio2fiji.instances.labels_to_separated_mask`); particles are numbered in raster
    order.

    Returns
    -------
    labels : ndarray of uint32, ``shape``
    probability : ndarray of float32, ``shape``
    """
    from skimage.segmentation import watershed

    prob = resample_map(probability, shape)
    mask = prob > threshold
    markers = np.where(mask, resample_labels(labels, shape), 0).astype(np.int64)
    lab = watershed(-prob, markers, mask=mask) if markers.any() else markers
    lab = add_unseeded(lab, mask, whole=False)
    lab = connected_components(labels_to_separated_mask(lab, 4), 4)
    return lab.astype(np.uint32), prob
