"""
ImageJ's Results table, natively and in ImageJ itself
=====================================================

``tio2fiji.measure`` reproduces ImageJ 1.x *Analyze Particles* with every shape measurement
(Area, Perim., Circ., Feret, ellipse, ...). This example measures the manual mask of one bundled
SEM image twice: with the native port and with the real ImageJ, started in a JVM inside this
process (``tio2fiji.measure_imagej``: JPype and ImageJ's ``ij.jar``, so Java and ImageJ must be
installed). It prints the largest relative difference of every column and the particle counts, and
draws the particles' outlines and the two Area columns against each other.
"""

import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from skimage.segmentation import find_boundaries

import tio2fiji
from tio2fiji.imagej import compare_tables

matplotlib.use("Agg")  # files only, no window

DATA = Path(__file__).resolve().parent / "data"
OUT = Path(os.environ.get("TIO2FIJI_GALLERY_OUT", "gallery-out"))
OUT.mkdir(parents=True, exist_ok=True)

# The SEM image gives the pixel size (Zeiss CZ_SEM tag) and the 64-row data bar at the bottom;
# mask_for_image crops the full-frame manual mask to the analysed area above the data bar.
sem = tio2fiji.read_sem(DATA / "SEM" / "1908248.tif")
mask = tio2fiji.mask_for_image(tio2fiji.read_mask(DATA / "masks" / "1908248_m.tif"), sem)
print(f"1908248: {mask.shape[1]}x{mask.shape[0]} analysed pixels (data bar: {sem.data_bar_rows} rows), "
      f"pixel size {sem.pixel_size_m * 1e9:.5f} nm ({sem.pixel_size_source})")

# Connectivity 4: the BAM annotators kept touching particles apart by one-pixel background lines.
# Such a line is 8-connected, so 8-connected tracing (ImageJ's default) jumps across it diagonally
# and merges neighbours into one particle; with 4-connectivity every drawn particle stays separate.
options = dict(pixel_size_m=sem.pixel_size_m, connectivity=4, image_name="1908248")
native = tio2fiji.measure(mask, **options)
imagej = tio2fiji.measure_imagej(mask, **options)
merged = tio2fiji.measure(mask, pixel_size_m=sem.pixel_size_m, connectivity=8)

counts = pd.DataFrame({
    "table": ["tio2fiji.measure", "ImageJ ParticleAnalyzer", "tio2fiji.measure, connectivity 8"],
    "connectivity": [4, 4, 8],
    "particles": [len(native), len(imagej), len(merged)],
})
print(f"\nImageJ {imagej.attrs['imagej_version']} ({imagej.attrs['imagej_source']}), lengths in "
      f"{native.attrs['unit']}")
print(counts.to_string(index=False))

# The native table in ImageJ's Results-table layout (the first particles)
print("\n" + native.head(5).to_string(index=False, float_format=lambda v: f"{v:.4g}"))

# Column by column: the largest absolute and relative difference over all particles (rows are in
# ImageJ's raster order in both tables). Angles are compared modulo 180 degrees.
diff = compare_tables(imagej, native)
diff.index.name = "column"
print("\nnative vs ImageJ, per column:")
print(diff.to_string(float_format=lambda v: f"{v:.3g}"))
print(f"largest relative difference of any column: {diff['max_rel'].max():.3g}")

native.to_csv(OUT / "imagej_results_native.csv", index=False)
imagej.to_csv(OUT / "imagej_results_imagej.csv", index=False)
diff.to_csv(OUT / "imagej_comparison.csv")
counts.to_csv(OUT / "imagej_counts.csv", index=False)

# Figure: the particles' outlines on the SEM image, and Area native vs ImageJ
labels, _ = tio2fiji.label_particles(mask, connectivity=4)  # (labels, count), label k = row k
rgb = np.dstack([sem.analysed / max(float(sem.analysed.max()), 1.0)] * 3)
rgb[find_boundaries(labels, mode="inner")] = (1.0, 0.8, 0.0)

fig, (ax_img, ax_area) = plt.subplots(1, 2, figsize=(12, 4.8), width_ratios=[1.6, 1])
ax_img.imshow(rgb)
ax_img.set_title(f"1908248: {len(native)} particles of the manual mask (4-connected)")
ax_img.set_axis_off()
area = native["Area"].to_numpy() / 1e3
ax_area.loglog(imagej["Area"].to_numpy() / 1e3, area, "o", ms=4, alpha=0.6)
lims = [area.min() * 0.8, area.max() * 1.25]
ax_area.plot(lims, lims, "k--", lw=0.8, label="identity")
ax_area.set_xlabel("Area, ImageJ (10³ nm²)")
ax_area.set_ylabel("Area, tio2fiji.measure (10³ nm²)")
ax_area.set_title(f"largest relative difference: {diff['max_rel'].max():.1g}")
ax_area.legend()
fig.tight_layout()
fig.savefig(OUT / "imagej_results_table.png", dpi=110)
print(f"\nwrote {OUT / 'imagej_results_table.png'} and the CSV tables")
