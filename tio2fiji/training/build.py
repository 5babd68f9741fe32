"""Building a training data set on disk: image/mask pairs → split, 256×256 tiles, ``coco.json``.

Two ways to make training data, both reproducible from one seed and recorded in ``split.json``:

``mode="thesis"`` (:func:`build_dataset`) reproduces the thesis's data set (§3.1): 22 source tiles of
256×256 from 22 different images become 396 tiles, split 380 for training and 16 for validation, and
6 tiles from 6 other images form the test set.

*How 22 → 396 arises.* The thesis flips each source tile vertically, horizontally, and both ways,
and "each flipped image variant was randomly rotated with the angles 90, 120, 180, 225, 270".
396 = 22 × 18 and 18 = 3 × 6: each of the 3 flipped variants is kept as it is *and* rotated by each
of the 5 angles, 3 × (1 + 5) = 18 (:data:`tio2fiji.transforms.THESIS_VARIANTS`). The other
readings do not give 396: with the unflipped original as a fourth variant 4 × 6 = 24 (528 tiles);
rotated copies only 3 × 5 = 15 (330); one random angle per variant 3 × 2 = 6 (132). The original
itself is among the 18 (the v+h flip rotated by 180°). Four of the 18 are exact copies of others
(v∘R180 = h, h∘R180 = v, v∘R90 = h∘R270, v∘R270 = h∘R90), so a source tile gives 14 distinct tiles (308 of the 396).
The 16 validation tiles are drawn at random from the 396, as the thesis's numbers imply (16 is not
a multiple of 18): every validation tile has flipped/rotated siblings in the training set, so the
thesis's validation IoU measures fit rather than generalisation. ``val_grouping="source"`` holds out
whole source tiles instead (18 tiles per source). Only the 6 test tiles are independent.

``mode="practical"`` splits whole images (default 70/15/15 %) and writes every image's full
deterministic tiling; training draws random 256×256 crops on the fly with the same augmentation
(:class:`tio2fiji.training.RandomCropDataset`), validation uses the full tiles
(:class:`tio2fiji.training.FullTileDataset`).

Rotations by other than right angles use real pixels only (the tile is cut with context around
it), and the photometric augmentation is applied on the fly during training, never written to disk:
see :mod:`tio2fiji.transforms`. Tiles keep their source's pixel values; they are scaled by
:func:`tio2fiji.transforms.normalize_for_network` with the bit depth of the whole source image
(``tiles.csv``'s ``bits``), so a tile is scaled as the full image is at inference.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, Tio2FijiError
from ..io import pair_files, write_csv, write_json
from ..transforms import (
    THESIS_ANGLES,
    THESIS_VARIANTS,
    TILE,
    augment_pair,
    context_margin,
    crop_with_context,
    input_bits,
    tile_positions,
)
from .coco import coco_from_masks
from .datasets import load_pair, write_tile
from .splits import SPLIT_NAMES, make_split, write_split

__all__ = ["BuildResult", "build_dataset"]


@dataclass
class BuildResult:
    """What :func:`build_dataset` wrote."""

    out_dir: Path
    mode: str
    split: dict  # image ids per split
    tiles: object  # pandas DataFrame, one row per tile (tiles.csv)
    split_path: Path
    coco_path: Path
    n_particles: int
    problems: list = field(default_factory=list)

    def counts(self) -> dict:
        """Number of tiles per split."""
        return {k: int((self.tiles["split"] == k).sum()) for k in SPLIT_NAMES}


def _rng_for(seed: int, name: str) -> np.random.Generator:
    """A generator per (seed, image): positions do not depend on which other images exist."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def _pick_position(mask, tile, yr, xr, rng, min_fraction, tries: int = 100):
    """A random tile position whose tile holds particles (the thesis's crops show particles).

    Draws until the tile's particle fraction reaches ``min_fraction``; after ``tries`` draws the
    draw with the most particle pixels is used.
    """
    best, best_frac = None, -1.0
    for _ in range(tries):
        y, x = int(rng.integers(yr[0], yr[1] + 1)), int(rng.integers(xr[0], xr[1] + 1))
        frac = float(mask[y:y + tile, x:x + tile].mean())
        if frac >= min_fraction:
            return y, x
        if frac > best_frac:
            best, best_frac = (y, x), frac
    return best


#: The choices of :func:`build_dataset`'s options, each refused in one line when not one of them.
_CHOICES = {"mode": ("thesis", "practical"), "fmt": ("png", "tif"), "val_grouping": ("tile", "source"),
            "on_bad": ("raise", "skip")}
_TABLE_COLUMNS = ["name", "split", "source", "y", "x", "flip", "angle", "image", "mask", "valid", "bits",
                  "valid_fraction", "n_particles"]


def _check_choices(**values) -> None:
    for name, value in values.items():
        first, second = _CHOICES[name]
        if value not in (first, second):
            raise InputError(f"{name} must be {first!r} or {second!r}, not {value!r}.")


def _load_pairs(images_dir, masks_dir, tile: int, data_bar_rows, on_bad: str):
    """Read every image/mask pair first, so that a bad pair stops the build before anything is
    written: ``({id: (pixels, mask, bits, data-bar rows)}, problems)``."""
    pairs = pair_files(images_dir, masks_dir)
    by_id = {Path(i).stem: (Path(i), Path(m)) for i, m in pairs}
    problems: list = []
    loaded = {}
    for name, (ip, mp) in by_id.items():
        try:
            sem, raw, mask = load_pair(ip, mp, data_bar_rows)
            if raw.shape[0] < tile or raw.shape[1] < tile:
                raise InputError(f"{ip}: analysed area {raw.shape[1]}x{raw.shape[0]} is smaller "
                                 f"than a {tile}x{tile} tile.")
            if not mask.any():
                problems.append({"name": name, "problem": "empty", "detail": f"{mp.name} has no particles"})
            loaded[name] = (raw, mask, input_bits(raw), sem.data_bar_rows)
        except Tio2FijiError as exc:
            problems.append({"name": name, "problem": "unusable pair", "detail": str(exc)})
    bad = [p for p in problems if p["problem"] == "unusable pair"]
    if bad and on_bad == "raise":
        raise InputError(f"{len(bad)} unusable image/mask pair(s): "
                         + " | ".join(p["detail"] for p in bad))
    return loaded, problems


class _Plan:
    """The tiles of a build, planned first and made one at a time while writing, so that memory
    holds the source images but never all tiles: per tile a record (its ``tiles.csv`` row) and a
    function that makes its arrays ``(image, mask, valid)``."""

    def __init__(self, tile: int, ext: str):
        self.tile, self.ext, self.rows = tile, ext, []

    def add(self, name, split, source, y, x, flip_kind, angle, make, bits) -> None:
        ext = self.ext
        rec = {"name": name, "split": split, "source": source, "y": y, "x": x, "flip": flip_kind or "",
               "angle": angle, "image": f"images/{name}.{ext}", "mask": f"masks/{name}.{ext}",
               "valid": "", "bits": "" if bits is None else bits}
        self.rows.append((rec, make))

    def add_plain(self, name, split, source, raw, mask, y, x, bits) -> None:
        """A tile cut from the image as it is."""
        tile = self.tile
        sl = (slice(y, y + tile), slice(x, x + tile))
        self.add(name, split, source, y, x, None, 0, lambda: (raw[sl], mask[sl], np.ones((tile, tile), bool)),
                 bits)

    def add_augmented(self, name, source, win, y, x, flip_kind, angle, bits) -> None:
        """A flipped and rotated training tile of a window cut with context (``win``)."""
        tile = self.tile
        self.add(name, "train", source, y, x, flip_kind, angle,
                 lambda: augment_pair(win[0], win[1], flip_kind, angle, out_size=tile, valid=win[2]), bits)


def _plan_thesis(plan: _Plan, loaded: dict, seed: int, n_source: int, n_test: int, n_val: int,
                 val_grouping: str, min_fraction: float):
    """The thesis's tiles (see the module docstring): ``(split, meta)``."""
    ids, tile = sorted(loaded), plan.tile
    if n_source + n_test > len(ids):
        raise InputError(f"thesis mode needs {n_source} source + {n_test} test images (one tile "
                         f"from each), but {len(ids)} usable pairs were found; use --mode practical (Python: "
                         f"mode='practical', or lower n_source/n_test), or add image/mask pairs.")
    split = make_split(ids, counts=(n_source, 0, n_test), seed=seed)
    margin = context_margin(tile, THESIS_ANGLES)
    for name in split["train"]:
        raw, mask, bits, _ = loaded[name]
        rng = _rng_for(seed, name)
        h, w = raw.shape
        # position with room for the rotation context when the image allows it
        lo_y, hi_y = (margin, h - tile - margin) if h >= tile + 2 * margin else (0, h - tile)
        lo_x, hi_x = (margin, w - tile - margin) if w >= tile + 2 * margin else (0, w - tile)
        y, x = _pick_position(mask, tile, (lo_y, hi_y), (lo_x, hi_x), rng, min_fraction)
        win = crop_with_context(raw, mask, y, x, tile, margin)
        for flip_kind, angle in THESIS_VARIANTS:
            plan.add_augmented(f"{name}_{flip_kind}_r{angle:03d}", name, win, y, x, flip_kind, angle, bits)
    for name in split["test"]:
        raw, mask, bits, _ = loaded[name]
        rng = _rng_for(seed, name)
        y, x = _pick_position(mask, tile, (0, raw.shape[0] - tile), (0, raw.shape[1] - tile), rng,
                              min_fraction)
        plan.add_plain(f"{name}_y{y:04d}_x{x:04d}", "test", name, raw, mask, y, x, bits)
    _choose_validation(plan.rows, split["train"], seed, n_val, val_grouping)
    meta = {"mode": "thesis", "seed": seed, "fractions": None,
            "counts": {"source_images": n_source, "test_images": n_test, "val_tiles": n_val,
                       "tiles_per_source": len(THESIS_VARIANTS)},
            "val_grouping": val_grouping,
            "variants": [list(v) for v in THESIS_VARIANTS],
            "note": ("splits lists image ids: 'train' are the source images of the train and val "
                     "tiles, 'test' the images of the test tiles. With val_grouping='tile' (the "
                     "thesis) validation tiles have flipped/rotated siblings in the training set.")}
    return split, meta


def _choose_validation(rows: list, sources: list, seed: int, n_val: int, val_grouping: str) -> None:
    """The thesis mode's tile-level validation split: ``n_val`` augmented tiles at random
    (``"tile"``) or all the tiles of ``ceil(n_val / 18)`` held-out sources (``"source"``)."""
    aug = [k for k, r in enumerate(rows) if r[0]["split"] == "train"]
    rng = np.random.default_rng([int(seed), 1])
    if val_grouping == "tile":
        if n_val > len(aug):
            raise InputError(f"n_val={n_val} but only {len(aug)} augmented tiles.")
        chosen = set(np.asarray(aug)[rng.permutation(len(aug))[:n_val]].tolist())
    else:
        n_src = math.ceil(n_val / len(THESIS_VARIANTS))
        if n_src >= len(sources):
            raise InputError(f"val_grouping='source' with n_val={n_val} would hold out every source.")
        held = set(rng.permutation(sources)[:n_src].tolist())
        chosen = {k for k in aug if rows[k][0]["source"] in held}
    for k in chosen:
        rows[k][0]["split"] = "val"


def _plan_practical(plan: _Plan, loaded: dict, seed: int, fractions):
    """Whole images split, every image's full deterministic tiling: ``(split, meta)``."""
    ids = sorted(loaded)
    split = make_split(ids, fractions=fractions, seed=seed)
    which = {i: s for s, lst in split.items() for i in lst}
    for name in ids:
        raw, mask, bits, _ = loaded[name]
        for y, x in tile_positions(raw.shape, plan.tile):
            plan.add_plain(f"{name}_y{y:04d}_x{x:04d}", which[name], name, raw, mask, y, x, bits)
    return split, {"mode": "practical", "seed": seed, "fractions": list(fractions), "counts": None}


def _write_tiles(rows: list, out_dir: Path, ext: str, connectivity: int, progress):
    """Make and write every planned tile (image, mask, valid pixels when some are invented) and its
    COCO annotations: ``(coco, problems)``."""
    total = len(rows)
    coco, coco_problems = None, []
    for done, (rec, make) in enumerate(rows, 1):
        img, msk, val = make()
        write_tile(out_dir / rec["image"], img)
        write_tile(out_dir / rec["mask"], msk.astype(np.uint8) * 255)
        if not val.all():
            rec["valid"] = f"valid/{rec['name']}.{ext}"
            write_tile(out_dir / rec["valid"], val.astype(np.uint8) * 255)
        rec["valid_fraction"] = float(val.mean())
        part, probs = coco_from_masks([msk], names=[rec["name"]], file_names=[rec["image"]],
                                      image_info=[{"split": rec["split"], "source": rec["source"]}],
                                      connectivity=connectivity, first_image_id=done)
        rec["n_particles"] = len(part["annotations"])
        if coco is None:
            coco = part
        else:
            coco["images"] += part["images"]
            for a in part["annotations"]:
                a["id"] = len(coco["annotations"]) + 1
                coco["annotations"].append(a)
        coco_problems += probs
        if progress is not None:
            progress(done, total, rec["name"])
    if coco is None:  # nothing usable
        coco = coco_from_masks([], connectivity=connectivity)[0]
    return coco, coco_problems


def build_dataset(images_dir, masks_dir, out_dir, mode: str = "thesis", seed: int = 0,
                  tile: int = TILE, fractions=(0.7, 0.15, 0.15), n_source: int = 22, n_test: int = 6,
                  n_val: int = 16, val_grouping: str = "tile", min_particle_fraction: float = 0.02,
                  fmt: str = "png",
                  connectivity: int = 4, data_bar_rows: int | None = None, on_bad: str = "raise",
                  progress=None) -> BuildResult:
    """Write 256×256 tile pairs, ``tiles.csv``, ``split.json`` and ``coco.json`` to ``out_dir``.

    Parameters
    ----------
    images_dir, masks_dir : path
        SEM images and their masks (paired by :func:`tio2fiji.io.pair_files`).
    out_dir : path
        Gets ``images/<tile>.png``, ``masks/<tile>.png`` (0/255), ``valid/<tile>.png`` for tiles
        with invented pixels (none when every tile has enough context), ``tiles.csv``,
        ``split.json``, ``coco.json``. Every file is written atomically; files of earlier builds
        with other names are left in place (``tiles.csv`` lists this build's tiles).
    mode : {"thesis", "practical"}
        See the module docstring.
    seed : int
        Determines the image split, the tile positions and the tile split.
    tile : int
    fractions : 3 floats
        Practical mode: train/val/test fractions of the images.
    n_source, n_test, n_val : int
        Thesis mode: source images (one tile each, 18 tiles per source), test images (one
        unaugmented tile each), validation tiles (drawn from the augmented tiles).
    val_grouping : {"tile", "source"}
        Thesis mode: ``"tile"`` draws ``n_val`` validation tiles at random, as the thesis;
        ``"source"`` holds out whole sources (``ceil(n_val / 18)`` of them, all their tiles).
    min_particle_fraction : float
        Thesis mode: a source or test tile is drawn at a random position where at least this
        fraction of its pixels are particle (the thesis's crops show particles; several BAM images
        are sparse and a blind crop can be empty).
    fmt : {"png", "tif"}
    connectivity : {4, 8}
        Particles for ``coco.json``.
    data_bar_rows : int, optional
        Data-bar height for all images; detected per image when None.
    on_bad : {"raise", "skip"}
        A pair that cannot be used (unreadable, non-binary or mis-sized mask, image too small):
        ``"raise"`` stops with every such pair listed; ``"skip"`` leaves it out and reports it in
        ``problems`` (and in ``split.json``).
    progress : callable, optional
        ``progress(done, total, name)`` after each tile written (``name``: the tile's).

    Returns
    -------
    BuildResult
    """
    _check_choices(mode=mode, fmt=fmt, val_grouping=val_grouping, on_bad=on_bad)
    out_dir = Path(out_dir)
    loaded, problems = _load_pairs(images_dir, masks_dir, tile, data_bar_rows, on_bad)
    ext = "png" if fmt == "png" else "tif"
    plan = _Plan(tile, ext)
    if mode == "thesis":
        split, meta = _plan_thesis(plan, loaded, seed, n_source, n_test, n_val, val_grouping,
                                   min_particle_fraction)
    else:
        split, meta = _plan_practical(plan, loaded, seed, fractions)
    coco, coco_problems = _write_tiles(plan.rows, out_dir, ext, connectivity, progress)
    problems += [dict(p, problem=f"tile: {p['problem']}") for p in coco_problems]
    return _write_index(out_dir, plan.rows, coco, split, meta, problems, images_dir=images_dir,
                        masks_dir=masks_dir, mode=mode, seed=seed, tile=tile, connectivity=connectivity,
                        data_bar_rows=data_bar_rows)


def _write_index(out_dir: Path, rows: list, coco: dict, split: dict, meta: dict, problems: list, *,
                 images_dir, masks_dir, mode, seed, tile, connectivity, data_bar_rows) -> BuildResult:
    """``coco.json``, ``tiles.csv`` and ``split.json`` of the tiles written, and what was built."""
    import pandas as pd

    table = pd.DataFrame([r[0] for r in rows], columns=_TABLE_COLUMNS)
    coco["info"].update({"mode": mode, "seed": seed,
                         "source_data": "see the licence of the images the tiles were cut from"})
    tiles = {s: list(table.loc[table["split"] == s, "name"]) for s in SPLIT_NAMES}
    meta.update({
        "tile": tile, "connectivity": connectivity,
        "images_dir": str(Path(images_dir).resolve()), "masks_dir": str(Path(masks_dir).resolve()),
        "data_bar_rows": data_bar_rows,
        "tiles": tiles,
        "tile_counts": {s: len(v) for s, v in tiles.items()},
        "skipped": [p for p in problems if p["problem"] == "unusable pair"],
    })
    coco_path = write_json(out_dir / "coco.json", coco)
    write_csv(out_dir / "tiles.csv", table)
    split_path = write_split(out_dir / "split.json", split, meta)
    return BuildResult(out_dir=out_dir, mode=mode, split=split, tiles=table, split_path=split_path,
                       coco_path=coco_path, n_particles=len(coco["annotations"]), problems=problems)
