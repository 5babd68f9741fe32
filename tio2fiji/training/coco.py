"""COCO instance annotations: the export of binary masks (:func:`coco_from_masks`, written by
:func:`tio2fiji.training.build_dataset` as ``coco.json``) and the Mask R-CNN training data read
back from it (:class:`CocoInstanceDataset`, :func:`targets_from_instances`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..instances import connected_components
from ..metrics import rle_from_labels
from ..transforms import normalize_for_network, photometric
from .datasets import read_tile
from .splits import read_split

__all__ = ["coco_from_masks", "targets_from_instances", "CocoInstanceDataset", "collate_detection"]


# --------------------------------------------------------------------------------------------------
# export


def _binary_problem(mask, shape, name):
    """Return (bool mask, None) or (None, problem dict)."""
    a = np.asarray(mask)
    if a.ndim != 2:
        return None, {"name": name, "problem": "not 2-D", "detail": f"shape {a.shape}"}
    if shape is not None and tuple(a.shape) != tuple(shape):
        return None, {"name": name, "problem": "size mismatch",
                      "detail": f"mask is {a.shape[1]}x{a.shape[0]}, image {shape[1]}x{shape[0]}"}
    if a.dtype == bool:
        return a, None
    values = np.unique(a)
    if values.size > 2 or (values.size == 2 and values[0] != 0) or (values.size == 1 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:5]) + (", ..." if values.size > 5 else "")
        return None, {"name": name, "problem": "non-binary",
                      "detail": f"{values.size} distinct values ({shown}); expected 0 and one value"}
    return a != 0, None


def coco_from_masks(masks, names=None, file_names=None, shapes=None, image_info=None,
                    connectivity: int = 4, first_image_id: int = 1) -> tuple[dict, list]:
    """COCO instance annotations, one per particle, from binary masks.

    Particles are the connected components of each mask (4-connected by default: the BAM masks
    separate touching particles by 1-pixel gaps that only 4-connectivity respects). Each becomes an
    annotation with an RLE ``segmentation`` (``counts`` as a str), ``bbox`` ``[x, y, w, h]``,
    ``area`` (pixels), ``iscrowd`` 0 and the single category ``"particle"`` (id 1). The result, saved
    as JSON, loads with ``pycocotools.coco.COCO``.

    Parameters
    ----------
    masks : sequence of array_like
        Binary masks (bool, or 0 and one other value).
    names : sequence of str, optional
        Names used in problem reports (default ``image_<k>``).
    file_names : sequence of str, optional
        ``file_name`` of each image entry (default ``<name>.png``).
    shapes : sequence of (int, int), optional
        The image size each mask must have.
    image_info : sequence of dict, optional
        Extra fields for each image entry (e.g. ``{"split": "train"}``).
    connectivity : {4, 8}
    first_image_id : int

    Returns
    -------
    coco : dict
        ``images``, ``annotations``, ``categories``, ``info``.
    problems : list of dict
        ``{"name", "problem", "detail"}`` for every bad mask. Non-binary, not 2-D and size-mismatched
        masks are left out of ``coco``; empty masks are kept as images without annotations (a valid
        negative example) but reported, so that an all-black mask by mistake is noticed.
    """
    masks = list(masks)
    n = len(masks)
    names = [f"image_{k}" for k in range(n)] if names is None else [str(s) for s in names]
    file_names = [f"{nm}.png" for nm in names] if file_names is None else list(file_names)
    images, anns, problems = [], [], []
    for k, m in enumerate(masks):
        shape = None if shapes is None else shapes[k]
        b, prob = _binary_problem(m, shape, names[k])
        if prob is not None:
            problems.append(prob)
            continue
        img_id = first_image_id + k
        entry = {"id": img_id, "file_name": file_names[k], "height": int(b.shape[0]),
                 "width": int(b.shape[1])}
        if image_info is not None:
            entry.update(image_info[k])
        images.append(entry)
        lab = connected_components(b, connectivity, dtype=np.int32)
        n_lab = int(lab.max(initial=0))
        if n_lab == 0:
            problems.append({"name": names[k], "problem": "empty", "detail": "no particle pixels"})
            continue
        from pycocotools import mask as mask_utils

        rles = rle_from_labels(lab, n_lab)
        areas = np.bincount(lab.ravel(), minlength=n_lab + 1)[1:]
        boxes = mask_utils.toBbox([{"size": r["size"], "counts": r["counts"].encode()} for r in rles])
        for j, r in enumerate(rles):
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": 1,
                         "segmentation": r, "area": int(areas[j]),
                         "bbox": [float(v) for v in boxes[j]], "iscrowd": 0})
    coco = {
        "info": {"description": "tio2fiji particle annotations", "connectivity": connectivity},
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "particle", "supercategory": "particle"}],
    }
    return coco, problems


# --------------------------------------------------------------------------------------------------
# Mask R-CNN training data


def targets_from_instances(masks) -> dict:
    """A torchvision detection target from instance masks ``(N, H, W)`` (bool).

    Empty masks are dropped. Boxes are ``[x0, y0, x1 + 1, y1 + 1]`` of each mask's pixels (pixel
    edges), so a one-pixel particle has a 1×1 box and no box is degenerate.

    Returns
    -------
    dict
        ``boxes`` float32 ``(N, 4)``, ``labels`` int64 ``(N,)`` (all 1), ``masks`` uint8 ``(N, H, W)``.
    """
    import torch

    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise InputError(f"instance masks must be (N, H, W), got shape {masks.shape}.")
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    keep = rows.any(axis=1)
    masks, rows, cols = masks[keep], rows[keep], cols[keep]
    n, h, w = masks.shape
    boxes = np.zeros((n, 4), np.float32)
    if n:
        boxes[:, 0] = cols.argmax(axis=1)
        boxes[:, 1] = rows.argmax(axis=1)
        boxes[:, 2] = w - cols[:, ::-1].argmax(axis=1)
        boxes[:, 3] = h - rows[:, ::-1].argmax(axis=1)
    return {"boxes": torch.from_numpy(boxes), "labels": torch.ones(n, dtype=torch.int64),
            "masks": torch.from_numpy(masks.astype(np.uint8))}


class CocoInstanceDataset:
    """Tiles and their particle instances from the ``coco.json`` of a data folder.

    Every image entry of ``coco.json`` whose ``split`` is ``split`` is an item (entries without a
    ``split`` field are assigned by ``split.json``'s tile lists). Its instances are its
    annotations (RLE or polygons; ``iscrowd`` ones are skipped): for a data folder written by
    ``tio2fiji dataset build``, the 4-connected components of the mask tile, so touching particles
    separated by a 1-pixel gap are separate instances. The image is scaled by
    :func:`tio2fiji.transforms.normalize_for_network` with the bit depth of its source image
    (``tiles.csv``); pixels a rotation invented (``tiles.csv``'s ``valid`` files) are 0 and hold no
    instance.

    With ``augment`` every item is rotated by a random multiple of 90° and flipped left-right with
    probability 1/2 (tile and instance masks alike, exactly), then gets the thesis's photometric
    augmentation (:func:`tio2fiji.transforms.photometric`, image only). Item ``i`` of epoch ``e``
    draws from ``numpy.random.default_rng([seed, e, i])``; call :meth:`set_epoch` every epoch.

    Items are ``(image, target, valid)``: a float32 tensor ``(1, H, W)``, a torchvision detection
    target (:func:`targets_from_instances`; empty masks dropped) and a bool tensor ``(H, W)``.

    Parameters
    ----------
    data_dir : path
        Holds ``coco.json`` (and normally ``tiles.csv``, ``split.json``).
    split : {"train", "val", "test"}
    seed : int
    augment : bool
        Default: True for ``"train"``.
    photometric_p : float, optional
        Default 0.4 (the thesis) when augmenting, else 0.
    length : int, optional
        Items per epoch. Default: one per tile. Otherwise each epoch walks through fresh random
        permutations of the tiles (depending on ``seed`` and the epoch).
    """

    def __init__(self, data_dir, split: str = "train", seed: int = 0, augment: bool | None = None,
                 photometric_p: float | None = None, length: int | None = None):
        import pandas as pd

        self.data_dir = Path(data_dir)
        coco_path = self.data_dir / "coco.json"
        if not coco_path.is_file():
            raise InputError(f"{self.data_dir}: no coco.json; build the data set first "
                             f"(tio2fiji dataset build).")
        try:
            coco = json.loads(coco_path.read_text(encoding="utf-8"))
            images, anns = coco["images"], coco.get("annotations", [])
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{coco_path}: not a COCO annotation file ({exc}).") from exc
        names = None
        if any("split" not in im for im in images):
            split_path = self.data_dir / "split.json"
            if not split_path.is_file():
                raise InputError(f"{coco_path}: image entries have no 'split' field and there is no "
                                 f"split.json next to it; rebuild with tio2fiji dataset build.")
            _, meta = read_split(split_path)
            names = set((meta.get("tiles") or {}).get(split, []))
        self.images = [im for im in images
                       if (im.get("split") == split if names is None else Path(im["file_name"]).stem in names)]
        by_image: dict = {}
        for a in anns:
            if not a.get("iscrowd", 0):
                by_image.setdefault(a["image_id"], []).append(a)
        self.annotations = [by_image.get(im["id"], []) for im in self.images]
        self.tiles = {}
        table = self.data_dir / "tiles.csv"
        if table.is_file():
            t = pd.read_csv(table, keep_default_na=False)
            self.tiles = {r["image"]: r for r in t.to_dict("records")}
        self.split = split
        self.seed = int(seed)
        self.augment = (split == "train") if augment is None else bool(augment)
        self.photometric_p = (0.4 if self.augment else 0.0) if photometric_p is None else float(photometric_p)
        self.length = None if length is None else int(length)
        if self.length is not None and self.length < 1:
            raise InputError(f"length (crops per epoch) must be positive, got {length}.")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images) if self.length is None else (self.length if self.images else 0)

    def groups(self) -> list:
        """Per item, the validation group: the source image in practical mode, else the tile.

        As the U-Net's validation (:func:`tio2fiji.training.train_unet`): a practical data set's
        tiles are pooled per whole image, the thesis's validation tiles count one by one.
        """
        mode = None
        if (self.data_dir / "split.json").is_file():
            mode = read_split(self.data_dir / "split.json")[1].get("mode")
        if mode == "practical" and self.length is None:
            return [im.get("source", im["id"]) for im in self.images]
        return list(range(len(self)))

    def _tile_index(self, index: int) -> int:
        if self.length is None:
            return index
        n = len(self.images)
        perm = np.random.default_rng([self.seed, self.epoch, 1_000_003, index // n]).permutation(n)
        return int(perm[index % n])

    def item_arrays(self, index: int):
        """``(image float32 (H, W), instance masks bool (N, H, W), valid bool (H, W))``."""
        from pycocotools import mask as mask_utils

        if not 0 <= index < len(self):
            raise IndexError(index)
        k = self._tile_index(index)
        entry, anns = self.images[k], self.annotations[k]
        path = self.data_dir / entry["file_name"]
        if not path.is_file():
            raise InputError(f"{path}: image of coco.json not found (was the data folder moved?).")
        raw = read_tile(path)
        if raw.ndim == 3:  # an RGB(A) export of a gray tile
            raw = raw[..., 0]
        row = self.tiles.get(entry["file_name"], {})
        bits = row.get("bits", "")
        img = normalize_for_network(raw, bits=int(bits) if str(bits) not in ("", "nan") else None)
        h, w = img.shape
        if row.get("valid"):
            valid = read_tile(self.data_dir / row["valid"]) > 0
        else:
            valid = np.ones((h, w), bool)
        rles = []
        for a in anns:
            seg = a["segmentation"]
            if isinstance(seg, list):  # polygons
                rles.append(mask_utils.merge(mask_utils.frPyObjects(seg, h, w)))
            elif isinstance(seg.get("counts"), list):  # uncompressed RLE
                rles.append(mask_utils.frPyObjects(seg, h, w))
            else:
                rles.append({"size": seg["size"], "counts": seg["counts"].encode("ascii")
                             if isinstance(seg["counts"], str) else seg["counts"]})
        masks = np.zeros((0, h, w), bool)
        if rles:
            import warnings

            with warnings.catch_warnings():
                # pycocotools' own numpy-2 deprecation notice, not about our data
                warnings.simplefilter("ignore", DeprecationWarning)
                masks = np.moveaxis(mask_utils.decode(rles), 2, 0) > 0
            if masks.shape[1:] != (h, w):
                raise InputError(f"{path}: coco.json masks are {masks.shape[2]}x{masks.shape[1]}, "
                                 f"the image {w}x{h}.")
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            turns, mirror = int(rng.integers(4)), bool(rng.integers(2))
            img, valid = np.rot90(img, turns), np.rot90(valid, turns)
            masks = np.rot90(masks, turns, axes=(1, 2))
            if mirror:
                img, valid, masks = img[:, ::-1], valid[:, ::-1], masks[:, :, ::-1]
            img = photometric(np.ascontiguousarray(img), rng, p=self.photometric_p)
        img = np.where(valid, img, 0.0).astype(np.float32)
        return np.ascontiguousarray(img), np.ascontiguousarray(masks & valid), np.ascontiguousarray(valid)

    def __getitem__(self, index: int):
        import torch

        img, masks, valid = self.item_arrays(index)
        return torch.from_numpy(img)[None], targets_from_instances(masks), torch.from_numpy(valid)


def collate_detection(batch):
    """Detection batches are lists: images (and targets) may differ in size and instance count."""
    return tuple(zip(*batch))
