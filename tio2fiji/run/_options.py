"""The options of an ``analyze`` run, stated once: :class:`AnalysisOptions`.

Everything else is derived from its fields, by name: the keyword arguments of
:func:`tio2fiji.run.analyze_images`, the defaults of ``tio2fiji analyze``, the job each image is
analysed with (:func:`tio2fiji.run.analyze_one`), ``analysis.json``'s ``options``
(:meth:`AnalysisOptions.recorded`: the fields marked ``record``) and the key that says whether an
earlier run's part can be kept (:meth:`AnalysisOptions.resume_key`: the fields marked ``numbers``,
the options that change a number in the outputs).

Importing this module loads no torch (``tio2fiji analyze --help`` reads its defaults).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .. import __version__
from ..checks import check_option
from ..distribution import METHODS
from ..errors import InputError
from ..imagej import BACKENDS
from ..instances import CONNECTIVITY, SEPARATE
from ..particles import parse_size
from ..transforms import SCALES

__all__ = ["AnalysisOptions", "MAX_PANELS", "POINTS"]

#: Images with their own panels (overlay, G/L envelopes) in the report, at most; the plots of a
#: larger run show these images too (evenly spaced over the input order, first and last included).
MAX_PANELS = 24
#: The points of the spatial tests (``"auto"``: centroids of the separated particles).
POINTS = ("auto", "uep", "centroid")


def _option(default, *, record=True, numbers=True):
    """A field of :class:`AnalysisOptions`: ``record`` in ``analysis.json``'s options, changes the
    ``numbers`` of the outputs (part of the resume key)."""
    return field(default=default, metadata={"record": record, "numbers": numbers})


@dataclass(frozen=True)
class AnalysisOptions:
    """The options of :func:`tio2fiji.run.analyze_images` (and ``tio2fiji analyze``).

    Attributes
    ----------
    model : "default", path or torch.nn.Module
        The segmentation network (:func:`tio2fiji.models.load_model`); loaded once (per worker).
        Dask workers need a name or a file. Not an option of the resume key itself: the model's
        identity (its file's SHA-256) is.
    backend : {"native", "imagej"}
        Who measures the particles. ImageJ measures binary masks, so touching particles are cut
        apart by one pixel first (:func:`tio2fiji.instances.labels_to_separated_mask`).
    separate : {"auto", "none", "watershed", ...}
        How :func:`tio2fiji.predict.segment` turns the mask into particles: ``"watershed"`` splits
        touching particles, ``"none"`` keeps connected components, ``"auto"`` is the model's own
        way (watershed for a U-Net, the network's own instances for Mask R-CNN).
    connectivity : {4, 8}
        Particle connectivity of the connected components (``separate="none"``) and of the
        measurement's outline tracing (4: particles apart unless they share a side, as in the BAM
        masks).
    methods : sequence of {"clark-evans", "monte-carlo", "biovoxxel"}
        Spatial-distribution tests, one ``distribution.csv`` row each per image.
    points : {"auto", "uep", "centroid"}
        Points of the tests (``"auto"``: centroids of the separated particles).
    threshold : float, optional
        Probability threshold (default: the model's; ``analysis.json`` records the one used).
    n_boot, seed
        Bootstrap of the size statistics (:func:`tio2fiji.report.bootstrap_ci`); ``seed`` also
        seeds the Monte Carlo test and the envelopes.
    n_sim : int
        Simulations of the Monte Carlo test.
    envelope_sims : int
        Simulations of the G/L envelopes (0: no envelopes; only the plots change).
    report : bool
        Write the plots and ``report.html``.
    complete_only : bool
        Use only the complete particles for ``summary.csv`` (its ``complete`` rows only), the
        plots, the G/L envelopes and ``distribution.csv`` (the points of the complete particles);
        ``particles.csv`` keeps every particle. Recorded as ``options.complete_only`` in
        ``analysis.json`` and said in the report.
    data_bar_rows : int, optional
        Height of the data bar of every image (0: none); detected per image when None
        (:func:`tio2fiji.io.detect_data_bar`). Recorded as ``options.data_bar_rows``.
    pixel_size_m : float, optional
        Pixel size (metres) of every image: it overrides the file's calibration and burned-in bar,
        as in every command; each image's ``pixel_size_source`` says what it replaced
        (:func:`tio2fiji.io.given_source`). Without it, an image whose file has no calibration gets
        its burned-in field width or scale bar (:func:`tio2fiji.io.calibrate_missing`).
    allow_pixels : bool
        Measure an image that nothing calibrates in pixels; without it such an image fails
        (listed in ``failures``) instead of silently turning nm into pixels.
    tta : bool
        Test-time augmentation (:func:`tio2fiji.predict.segment`): 8 network passes per image.
    scale : {"model", "none"}
        ``"model"``: calibrated images are segmented at the model's pixel size and their particles
        brought back (:func:`tio2fiji.predict.segment`); each image's ``segmentation.scale`` in
        ``analysis.json`` says what was done, and images outside the model's range get a warning.
    size : str, optional
        ImageJ's size filter (``"10-Infinity"``: nm² when calibrated, else pixels; ``"10-500
        pixel"``, :func:`tio2fiji.particles.parse_size`): only these particles are measured, tested
        and summarised; ``options.size`` and each image's ``size`` (its pixel bounds) record it.
    device : str
        Where the network runs (:func:`tio2fiji.models.resolve_device`; ``"auto"`` or None: the
        first CUDA GPU when there is one). On Dask workers ``auto``/``cuda`` gives each worker one
        GPU in turn. Its kind (CPU or GPU: float16 on a GPU changes the last digits) is part of
        the resume key.
    workers : int, optional
        Run the images on a local Dask cluster of this many worker processes
        (:func:`tio2fiji.run.open_client`); default: one after another in this process.
    scheduler : str, optional
        Address or scheduler file of a running Dask scheduler whose workers run the images (they
        must see ``out_dir`` and the images at the same paths: a shared file system).
    threads : int, optional
        torch threads per Dask worker (default: cores // workers on its host).
    force : bool
        Analyse every image again; without it the parts of an earlier run into ``out_dir`` made
        from the same image bytes, model and options are kept (``AnalysisResult.skipped``). The
        parts and files of an earlier run's images that are not in this run are always kept, left
        out of this run's tables (``AnalysisResult.kept_other``, ``analysis.json``
        ``run.kept_other_images``).
    max_panels : int
        Images with their own overlay and envelope panels in the report, evenly spaced over the
        input order (all when there are no more); the report's tables and plots show these
        images, the CSV files every image.
    """

    model: object = _option("default", record=False, numbers=False)  # its identity is in the key
    backend: str = _option("native")
    separate: str = _option("auto")
    connectivity: int = _option(CONNECTIVITY)
    methods: tuple = _option(("clark-evans", "monte-carlo"))
    points: str = _option("auto")
    threshold: float | None = _option(None)
    n_boot: int = _option(1000)
    seed: int = _option(0)
    n_sim: int = _option(199)
    envelope_sims: int = _option(39, numbers=False)
    report: bool = _option(True, record=False, numbers=False)
    complete_only: bool = _option(False)
    data_bar_rows: int | None = _option(None)
    pixel_size_m: float | None = _option(None)
    allow_pixels: bool = _option(False)
    tta: bool = _option(False)
    scale: str = _option("model")
    size: str | None = _option(None)
    device: str | None = _option("auto", record=False)  # its kind, see resume_key
    workers: int | None = _option(None, record=False, numbers=False)
    scheduler: str | None = _option(None, record=False, numbers=False)
    threads: int | None = _option(None, record=False, numbers=False)
    force: bool = _option(False, record=False, numbers=False)
    max_panels: int = _option(MAX_PANELS, record=False, numbers=False)

    @classmethod
    def names(cls) -> tuple:
        """Every option's name."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def given(cls, options=None, **values) -> AnalysisOptions:
        """``options`` (default: every default) with the named ``values`` replaced.

        Raises
        ------
        InputError
            A name that is no option.
        """
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise InputError(f"unknown analysis option(s) {', '.join(unknown)}: the options are "
                             f"{', '.join(cls.names())}.")
        if options is not None and not isinstance(options, cls):
            raise InputError(f"options must be an AnalysisOptions, not {type(options).__name__}.")
        return replace(options if options is not None else cls(), **values)

    @property
    def dask(self) -> bool:
        """The images run on Dask workers (``workers`` or ``scheduler``)."""
        return self.workers is not None or self.scheduler is not None

    def checked(self) -> AnalysisOptions:
        """These options checked (before anything is loaded or written) and in their one form:
        ``methods`` a tuple, flags booleans, numbers converted, ``size`` as
        :func:`tio2fiji.particles.parse_size` keeps its text (None for every particle).

        Raises
        ------
        InputError
            The first option out of its domain, in one line naming it.
        """
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be 'native' or 'imagej', not {self.backend!r}.")
        if self.separate not in SEPARATE:
            raise InputError(f"separate must be one of {', '.join(SEPARATE)}, not {self.separate!r}.")
        if self.connectivity not in (4, 8):
            raise InputError(f"connectivity must be 4 or 8, not {self.connectivity!r}.")
        methods = tuple(self.methods)
        bad = [m for m in methods if m not in METHODS]
        if bad:
            raise InputError(f"unknown distribution method(s) {', '.join(map(str, bad))}: "
                             f"use {', '.join(METHODS)}.")
        if self.points not in POINTS:
            raise InputError(f"points must be 'auto', 'uep' or 'centroid', not {self.points!r}.")
        if self.scale not in SCALES:
            raise InputError(f"scale must be one of {', '.join(SCALES)}, not {self.scale!r}.")
        numbers = {name: check_option(name, getattr(self, name))
                   for name in ("threshold", "n_boot", "seed", "n_sim", "envelope_sims", "data_bar_rows",
                                "pixel_size_m")}
        size = parse_size(self.size)
        self._check_run()
        flags = {name: bool(getattr(self, name)) for name in ("report", "complete_only", "allow_pixels", "tta",
                                                              "force")}
        return replace(self, connectivity=int(self.connectivity), methods=methods, **numbers, **flags,
                       size=None if size is None else size.text)

    def _check_run(self):
        """How and where the run goes: workers or a scheduler, the report's panels."""
        if self.workers is not None and self.scheduler is not None:
            raise InputError("give either workers (a local Dask cluster) or scheduler, not both.")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise InputError(f"workers must be a whole number of 1 or more, not {self.workers!r}.")
        if self.dask and not isinstance(self.model, (str, Path)):
            raise InputError("Dask workers load the model themselves: give it as a name or a file.")
        if not isinstance(self.max_panels, int) or self.max_panels < 0:
            raise InputError(f"max_panels must be a whole number of 0 or more, not {self.max_panels!r}.")

    def _json(self, name):
        value = getattr(self, name)
        return list(value) if isinstance(value, tuple) else value

    def recorded(self, threshold) -> dict:
        """``analysis.json``'s ``options`` (and the report's): the fields marked ``record``, with
        the ``threshold`` used (the model's when none was given)."""
        values = {f.name: self._json(f.name) for f in fields(self) if f.metadata["record"]}
        if values.get("threshold") is None:
            values["threshold"] = threshold
        return values

    def resume_key(self, model, classifier, threshold, device) -> str:
        """The key a kept part must have been made with: the model's identity (``model``), the
        complete-particle classifier's SHA-256, tio2fiji's version and the fields marked
        ``numbers`` (``threshold`` the one used, ``device`` the kind it ran on: float16 autocast
        on CUDA changes the last digits, so a CPU part does not stand for a GPU one)."""
        values = {f.name: self._json(f.name) for f in fields(self) if f.metadata["numbers"]}
        values.update({"threshold": self.threshold if self.threshold is not None else threshold,
                       "device": device})
        text = json.dumps({"model": model, "tio2fiji": __version__, "classifier": classifier, **values},
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()
