"""A network's settings as one typed object, resolved once when its weights are loaded.

A model file keeps, next to its weights, how the network's output becomes particles (as StarDist
keeps ``thresholds.json`` beside its weights): the probability ``threshold``, Mask R-CNN's
detection ``score_threshold``, the U-Net's ``watershed``/``star``/``border`` parameters, its
working pixel size. :class:`ModelSettings` holds them, checked and with today's defaults for
what an older file does not store (:meth:`ModelSettings.from_config`), together with the raw
``model_config`` (architecture, int8 calibration, input normalisation) and where the weights came
from (:class:`Provenance`). :class:`Model` is a network with its settings: what
:func:`tio2fiji.models.checkpoint.load_model` returns and what :mod:`tio2fiji.predict`,
:mod:`tio2fiji.export` and :mod:`tio2fiji.run` pass down instead of resolving the settings again.

A bare network (training validation, tests) is wrapped explicitly::

    Model(net, ModelSettings.from_config({"outputs": "star", "n_rays": 32, "ray_scale": 16.0}))

and :func:`as_model` gives a bare network the defaults of a file that stores nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..errors import InputError
from ..instances import (
    BORDER_DEFAULTS,
    BORDER_WIDTH,
    DISTANCE_DEFAULTS,
    STAR_DEFAULTS,
    STAR_MODES,
    WATERSHED_DEFAULTS,
)
from ..transforms import TRAINED_PIXEL_SIZE_M

__all__ = ["OUTPUTS", "TRAINED_PIXEL_SIZE_M", "Provenance", "ModelSettings", "Model", "as_model"]

#: What a U-Net's output channels mean: ``"probability"`` = 1 particle logit; ``"star"`` = particle
#: logit, object-probability logit, then ``n_rays`` ray distances in pixels (StarDist's maps);
#: ``"border"`` = particle logit, then the logit of the band where two particles meet;
#: ``"distance"`` = the border U-Net's two, then the logit of each particle's normalised distance to
#: its edge (:func:`tio2fiji.instances.inner_distance`).
OUTPUTS = ("probability", "star", "border", "distance")
_DEFAULT_THRESHOLD = 0.5
_DEFAULT_SCORE_THRESHOLD = 0.5
_ASSUMED_SOURCE = "assumed: the BAM training images' 7.34375 nm"
#: The fields of :class:`ModelSettings` that say how the output becomes particles
#: (:meth:`ModelSettings.postprocessing`).
_POSTPROCESSING = ("threshold", "pixel_size_m", "pixel_size_source", "train_ecd", "score_threshold",
                   "max_overlap", "watershed", "outputs", "n_rays", "ray_scale", "star", "border",
                   "border_width", "distance", "min_particle_px")


@dataclass(frozen=True)
class Provenance:
    """Where a network's weights came from and what was stored with them.

    Attributes
    ----------
    file : str or None
        The model file or checkpoint read (None: a dict or a network given in memory).
    file_sha256 : str or None
        Its SHA-256 (the ONNX graph cache is keyed by it, :func:`tio2fiji.models.onnx.cached_graph`).
    weights_dtype : str or None
        A compact file's stored precision (``"float16"``, ``"int8"``); None for a checkpoint.
    epoch : int or None
        The training epoch the weights are from.
    val_iou : float or None
        Their validation IoU.
    metadata : dict
        Everything else stored with the weights (``metrics``, data, training time, ``format``...).
    """

    file: str | None = None
    file_sha256: str | None = None
    weights_dtype: str | None = None
    epoch: int | None = None
    val_iou: float | None = None
    metadata: dict = field(default_factory=dict, repr=False)


def _stored(cfg: dict, key: str, defaults: dict, optional=()) -> dict:
    out = dict(defaults)
    stored = cfg.get(key) or {}
    unknown = sorted(set(stored) - set(defaults) - set(optional))
    if unknown:
        raise InputError(f"model_config: unknown {key} parameter(s) {', '.join(unknown)} "
                         f"(known: {', '.join(defaults)}).")
    out.update(stored)
    return out


@dataclass(frozen=True)
class ModelSettings:
    """How a network's output becomes particles, its configuration and its provenance.

    Build it with :meth:`from_config` (checked, with defaults); the default constructor gives the
    settings of a file that stores nothing. The dict attributes are the settings' own copies:
    read them, do not change them.

    Attributes
    ----------
    threshold : float
        Probability above which a pixel is particle (for Mask R-CNN the mask threshold).
    score_threshold : float
        Mask R-CNN: the detections kept.
    max_overlap : float or None
        Mask R-CNN: :func:`tio2fiji.instances.paint_instances`' overlap rule (None: not stored).
    watershed : dict
        The parameters of :func:`tio2fiji.instances.watershed_split` for a U-Net.
    outputs : {"probability", "star", "border", "distance"}
        What the U-Net's channels mean (:data:`OUTPUTS`).
    n_rays : int
        ``"star"``: the rays per pixel.
    ray_scale : float
        ``"star"``: pixels per unit of the ray outputs.
    star : dict
        The parameters of :func:`tio2fiji.instances.labels_from_star`.
    border : dict
        The parameters of :func:`tio2fiji.instances.labels_from_border`.
    border_width : int
        The border band the ``"border"`` (and ``"distance"``) U-Net was trained on.
    distance : dict
        The parameters of :func:`tio2fiji.instances.labels_from_distance`.
    pixel_size_m : float
        The pixel size its training images had: its working scale.
    pixel_size_source : str
        ``"stored"``, or the assumption for a file that stores none (:data:`TRAINED_PIXEL_SIZE_M`).
    train_ecd : dict or None
        The ECD quantiles of its training particles (pixels and nm).
    min_particle_px : int
        Particles under this many pixels *at the model's pixel size* are not particles
        (:func:`tio2fiji.predict.segment` drops them, the bound converted to each image's pixel
        size): a model trained with the manual masks' components under 10 px left out as drawing
        fragments never learnt particles that small. 1 (files that store none) keeps all.
    config : dict
        The ``model_config`` as stored (architecture, for export and provenance).
    provenance : Provenance
    """

    threshold: float = _DEFAULT_THRESHOLD
    score_threshold: float = _DEFAULT_SCORE_THRESHOLD
    max_overlap: float | None = None
    watershed: dict = field(default_factory=lambda: dict(WATERSHED_DEFAULTS))
    outputs: str = "probability"
    n_rays: int = 0
    ray_scale: float = 1.0
    star: dict = field(default_factory=lambda: dict(STAR_DEFAULTS))
    border: dict = field(default_factory=lambda: dict(BORDER_DEFAULTS))
    border_width: int = BORDER_WIDTH
    distance: dict = field(default_factory=lambda: dict(DISTANCE_DEFAULTS))
    pixel_size_m: float = TRAINED_PIXEL_SIZE_M
    pixel_size_source: str = _ASSUMED_SOURCE
    train_ecd: dict | None = None
    min_particle_px: int = 1
    config: dict = field(default_factory=dict, repr=False)  # long (an int8 calibration): not in repr
    provenance: Provenance = field(default_factory=Provenance)

    @classmethod
    def from_config(cls, cfg: dict | None, provenance: Provenance | None = None) -> ModelSettings:
        """The settings a ``model_config`` stores; what it does not store gets today's defaults
        (0.5, 0.5, :data:`tio2fiji.instances.WATERSHED_DEFAULTS`, ``"probability"``,
        :data:`tio2fiji.instances.STAR_DEFAULTS`, :data:`tio2fiji.instances.BORDER_DEFAULTS`,
        :data:`TRAINED_PIXEL_SIZE_M`), so older files give the results they always gave.

        Raises
        ------
        InputError
            An unknown output kind, unknown or out-of-range post-processing parameters, a pixel
            size that is not a length in metres.
        """
        cfg = copy.deepcopy(dict(cfg or {}))
        outputs = cfg.get("outputs", "probability")
        if outputs not in OUTPUTS:
            raise InputError(f"model_config: unknown outputs {outputs!r} (known: {', '.join(OUTPUTS)}).")
        star = _stored(cfg, "star", STAR_DEFAULTS, optional=("min_size",))
        if star["mode"] not in STAR_MODES:
            raise InputError(f"model_config: star mode must be one of {', '.join(STAR_MODES)}, "
                             f"not {star['mode']!r}.")
        border = _stored(cfg, "border", BORDER_DEFAULTS)
        if not 0.0 < float(border["border_threshold"]) < 1.0 or int(border["min_seed"]) < 1 or border["sigma"] < 0:
            raise InputError(f"model_config: border parameters out of range ({border}); border_threshold "
                             f"in (0, 1), min_seed >= 1, sigma >= 0.")
        distance = _stored(cfg, "distance", DISTANCE_DEFAULTS)
        if (not 0.0 < float(distance["seed_threshold"]) < 1.0 or not 0.0 < float(distance["border_threshold"]) <= 1.0
                or int(distance["min_seed"]) < 1 or distance["sigma"] < 0 or not 0 <= distance["h"] < 1):
            raise InputError(f"model_config: distance parameters out of range ({distance}); seed_threshold "
                             f"in (0, 1), border_threshold in (0, 1], min_seed >= 1, sigma >= 0, h in [0, 1).")
        min_px = cfg.get("min_particle_px", 1)
        if isinstance(min_px, bool) or not isinstance(min_px, int) or not 1 <= min_px <= 10_000:
            raise InputError(f"model_config: min_particle_px must be a whole number of pixels from 1 to 10000, "
                             f"not {min_px!r}.")
        ps = cfg.get("pixel_size_m")
        if ps is not None and not (isinstance(ps, (int, float)) and 1e-12 < float(ps) < 1e-3):
            raise InputError(f"model_config: pixel_size_m must be a length in metres, not {ps!r}.")
        return cls(threshold=float(cfg.get("threshold", _DEFAULT_THRESHOLD)),
                   pixel_size_m=float(TRAINED_PIXEL_SIZE_M if ps is None else ps),
                   pixel_size_source="stored" if ps is not None else _ASSUMED_SOURCE,
                   train_ecd=cfg.get("train_ecd"), min_particle_px=min_px,
                   score_threshold=float(cfg.get("score_threshold", _DEFAULT_SCORE_THRESHOLD)),
                   max_overlap=None if cfg.get("max_overlap") is None else float(cfg["max_overlap"]),
                   watershed=_stored(cfg, "watershed", WATERSHED_DEFAULTS),
                   outputs=outputs, n_rays=int(cfg.get("n_rays", 0)),
                   ray_scale=float(cfg.get("ray_scale", 1.0)), star=star, border=border,
                   border_width=int(cfg.get("border_width", BORDER_WIDTH)), distance=distance,
                   config=cfg, provenance=provenance or Provenance())

    @property
    def arch(self) -> str:
        """``"unet"`` or ``"maskrcnn"``: the architecture the configuration names."""
        return self.config.get("arch", "unet")

    @property
    def int8_calibration(self) -> str | None:
        """The int8 activation ranges stored with the weights
        (:func:`tio2fiji.models.onnx.int8_calibration`), or None."""
        return self.config.get("int8_calibration") or None

    @property
    def normalisation(self) -> str | None:
        """How the network's input was scaled in training (e.g.
        ``"transforms.normalize_for_network"``), as stored; None when not stored."""
        return self.config.get("normalisation")

    def params(self, method: str) -> dict:
        """A copy of the parameters of a separation ``method`` (``"watershed"``, ``"star"``,
        ``"border"``, ``"distance"``); ``{}`` for any other."""
        return dict(getattr(self, method)) if method in ("watershed", "star", "border", "distance") else {}

    def postprocessing(self) -> dict:
        """The post-processing as a plain dict (copies): ``threshold``, ``score_threshold``,
        ``max_overlap``, ``watershed``, ``outputs``, ``n_rays``, ``ray_scale``, ``star``,
        ``border``, ``border_width``, ``distance``, ``pixel_size_m``, ``pixel_size_source``, ``train_ecd``,
        ``min_particle_px``."""
        return {k: copy.deepcopy(getattr(self, k)) for k in _POSTPROCESSING}


@dataclass(frozen=True, eq=False)
class Model:
    """A network and its settings: what :func:`tio2fiji.models.checkpoint.load_model` returns and
    what inference takes.

    Attributes
    ----------
    net : torch.nn.Module
        The network (PyTorch, or an exported :class:`tio2fiji.models.onnx.OnnxUNet`).
    settings : ModelSettings
    loaded_versions : tuple of int or None
        The parameters' in-place version counters when the weights were read from
        ``settings.provenance.file``: while they are unchanged the network is that file's, and
        its ONNX graph may come from the on-disk cache (:func:`tio2fiji.models.onnx.cached_graph`).
        None for a network not loaded from a file.
    """

    net: object
    settings: ModelSettings = field(default_factory=ModelSettings)
    loaded_versions: tuple | None = None

    def to(self, device) -> Model:
        """Move the network to ``device`` (in place); returns this model."""
        self.net.to(device)
        return self

    @property
    def as_loaded(self) -> bool:
        """Whether the weights are still those of the file they were read from."""
        return (self.loaded_versions is not None and self.settings.provenance.file_sha256 is not None
                and self.loaded_versions == tuple(p._version for p in self.net.parameters()))

    def state_dict(self) -> dict:
        """The network's weights (``net.state_dict()``)."""
        return self.net.state_dict()


def as_model(model) -> Model:
    """``model`` itself when it is a :class:`Model`; a bare network with the settings of a file
    that stores none (``ModelSettings()``)."""
    if isinstance(model, Model):
        return model
    if not hasattr(model, "parameters"):
        raise InputError(f"expected a network or a loaded model, not {type(model).__name__}.")
    return Model(model, ModelSettings())
