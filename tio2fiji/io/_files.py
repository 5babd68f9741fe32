"""Files: paths, pairing masks with their images, atomic writers, checksums.

Every output of tio2fiji goes through :func:`atomic_write` (a temporary file next to the target, then
a rename), so an interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from ..errors import InputError, OutputError

TIFF_SUFFIXES = (".tif", ".tiff")
OTHER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: Read by rosettasciio alone (pixels and calibration): DigitalMicrograph and Velox.
VENDOR_FILE_SUFFIXES = (".dm3", ".dm4", ".emd")


def check_path(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found. Check the path (it is relative to {Path.cwd()}).")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image file.")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes).")
    return path


def is_tiff(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def atomic_write(path: Path, write) -> Path:
    """Write through ``write(tmp_path)`` to a temporary file next to ``path``, then rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # the output's folder, never the input, is the cause
        raise OutputError.from_os_error(path, exc) from exc
    os.close(fd)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # disk full, read-only, ...: say which output
            raise OutputError.from_os_error(path, exc) from exc
        raise
    return path


def write_csv(path, table, **kwargs) -> Path:
    """Write a pandas DataFrame as CSV through a temporary file and a rename."""
    kwargs.setdefault("index", False)
    return atomic_write(path, lambda p: table.to_csv(p, **kwargs))


def write_json(path, obj) -> Path:
    """Write a JSON document through a temporary file and a rename."""
    def _write(p):
        with open(p, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, default=str)
            fh.write("\n")

    return atomic_write(path, _write)


def file_sha256(path) -> str:
    """SHA-256 hex digest of a file's contents, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


MASK_SUFFIX = re.compile(r"(_m|_cm|_mask|_masks|_labels|_label|_seg)$", re.IGNORECASE)


IMAGE_SUFFIXES = TIFF_SUFFIXES + OTHER_SUFFIXES + VENDOR_FILE_SUFFIXES


def find_image_for_mask(mask_path: Path, images_dir: Path) -> Path | None:
    """The SEM image in ``images_dir`` whose name is the mask's without a mask suffix (``_m``...)."""
    stem = MASK_SUFFIX.sub("", Path(mask_path).stem)
    for suffix in IMAGE_SUFFIXES:
        for cand in (images_dir / f"{stem}{suffix}", images_dir / f"{stem}{suffix.upper()}"):
            if cand.is_file():
                return cand
    return None


def _image_shape(path: Path) -> tuple[int, int]:
    """Height and width from the file header, without decoding the pixels."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
            return int(shape[0]), int(shape[1])
        from PIL import Image

        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception as exc:  # corrupt files raise many types
        raise InputError(f"{path}: cannot read the image header ({exc}).") from exc


def pair_files(images_dir, masks_dir, strict: bool = True, check_sizes: bool = True) -> list:
    """Pair every mask in ``masks_dir`` with its SEM image in ``images_dir``.

    A mask ``<id>_m.tif`` (or ``_mask``, ``_cm``, ...) belongs to the image ``<id>.tif``/``.png``/...
    (:func:`find_image_for_mask`).

    Parameters
    ----------
    images_dir, masks_dir : path
    strict : bool
        Raise when a mask has no image or an image has no mask. False returns the pairs found.
    check_sizes : bool
        Compare the sizes in the file headers: a mask must have its image's width and at most its
        height (it may leave out the data bar; the exact check is made when the pair is loaded).

    Returns
    -------
    list of (Path, Path)
        ``(image_path, mask_path)``, sorted by image name.

    Raises
    ------
    InputError
        Missing folders, no masks, unmatched files (``strict``), size mismatches; the message lists
        every offending file.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for d, what in ((images_dir, "images"), (masks_dir, "masks")):
        if not d.is_dir():
            raise InputError(f"{d}: {what} folder not found.")
    masks = sorted(p for p in masks_dir.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not masks:
        raise InputError(f"{masks_dir}: no mask files (.tif/.png/...) found.")
    pairs, no_image = [], []
    for m in masks:
        img = find_image_for_mask(m, images_dir)
        if img is None:
            no_image.append(m.name)
        else:
            pairs.append((img, m))
    used = {p[0].resolve() for p in pairs}
    no_mask = sorted(p.name for p in images_dir.iterdir()
                     if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                     and not p.name.startswith(".") and p.resolve() not in used)
    seen: dict = {}
    dup = []
    for img, m in pairs:
        if img in seen:
            dup.append(f"{seen[img].name} and {m.name} -> {img.name}")
        seen[img] = m
    problems = []
    if dup:
        problems.append("several masks for one image: " + "; ".join(dup))
    if strict and no_image:
        problems.append(f"{len(no_image)} mask(s) without an image in {images_dir}: "
                        + ", ".join(no_image[:10]) + (" ..." if len(no_image) > 10 else ""))
    if strict and no_mask:
        problems.append(f"{len(no_mask)} image(s) without a mask in {masks_dir} (expected "
                        f"<name>_m.tif): " + ", ".join(no_mask[:10]) + (" ..." if len(no_mask) > 10 else ""))
    if check_sizes:
        for img, m in pairs:
            hi, wi = _image_shape(img)
            hm, wm = _image_shape(m)
            if wm != wi or hm > hi:
                problems.append(f"{m.name} is {wm}x{hm} pixels but its image {img.name} is {wi}x{hi}")
    if problems:
        raise InputError("cannot pair images and masks: " + " | ".join(problems))
    return sorted(pairs, key=lambda p: p[0].name)
