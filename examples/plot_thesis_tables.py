"""
The thesis's Tables 8 and 9 on the bundled images
=================================================

The thesis summarises every segmented SEM image by its particle count, the particles' share of the
image, their mean circularity, solidity and Feret angle (Table 8), and tests whether the particles
lie at random, clustered or regularly spaced with BioVoxxel's *Particle Distribution (2D)*
(Table 9). This example segments the three bundled images with the bundled U-Net, measures every
particle as ImageJ does, and makes both tables: Table 8 with the equivalent circle diameter (ECD)
statistics and their bootstrap intervals added, Table 9 with BioVoxxel's test beside the
Clark-Evans test with Donnelly's edge correction, the sound test of the same question.
"""

import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import tio2fiji
from tio2fiji.distribution import distribution_table
from tio2fiji.instances import labels_to_separated_mask

matplotlib.use("Agg")  # files only, no window
torch.set_num_threads(1)  # one core for the network, one left for everything else

DATA = Path(__file__).resolve().parent / "data"
OUT = Path(os.environ.get("TIO2FIJI_GALLERY_OUT", "gallery-out"))
OUT.mkdir(parents=True, exist_ok=True)

# The bundled images were among the training images of the bundled model, so these tables show
# the pipeline at work, not the model's accuracy on unseen images (see tio2fiji/data/MODEL_CARD.md).
model = tio2fiji.load_model("default")  # loaded once, used for every image

tables, images, tests = [], [], []
for path in sorted((DATA / "SEM").glob("*.tif")):
    name = path.stem
    sem = tio2fiji.read_sem(path)
    # U-Net probability on overlapping tiles of the analysed area (data bar left out), threshold,
    # then touching particles split by a watershed, with the parameters stored in the model
    seg = tio2fiji.segment(model, sem)
    # 4-connected particles: the masks keep touching particles apart by one-pixel lines
    tables.append(tio2fiji.measure(seg.labels, pixel_size_m=sem.pixel_size_m, connectivity=4,
                                   image_name=name))
    h, w = seg.labels.shape
    images.append({"image": name, "width": w, "height": h, "pixel_size_m": sem.pixel_size_m,
                   "unit": sem.unit, "foreground_px": int(np.count_nonzero(seg.mask))})
    # Table 9 as the thesis made it: the binary mask (touching particles cut apart, as in
    # <image>_mask.tif) -> ImageJ's Ultimate Points -> BioVoxxel's test, reproduced exactly
    # (including its mixed units and its use of the expected distance as a variance)
    mask = labels_to_separated_mask(seg.labels, connectivity=4)
    tests.append(tio2fiji.test_distribution(mask, method="biovoxxel", pixel_size_m=sem.pixel_size_m,
                                            image=name))
    # Clark-Evans on the particles' centroids (one point per particle of the label image)
    tests.append(tio2fiji.test_distribution(seg.labels, method="clark-evans",
                                            pixel_size_m=sem.pixel_size_m, image=name))
    print(f"{name}: {len(tables[-1])} particles")

particles = pd.concat(tables, ignore_index=True)
table8 = tio2fiji.summary_table(particles, images)  # 1000 bootstrap resamples, seed 0
table9 = distribution_table(tests)

pd.set_option("display.width", 200)
show8 = table8[["image", "particles", "area_coverage_pct", "circularity_mean", "solidity_mean",
                "feret_angle_mean", "ECD_mean", "ECD_median", "ECD_median_ci_low",
                "ECD_median_ci_high", "ECD_D10", "ECD_D90"]]
print("\nTable 8 (lengths in nm; ECD median with its 95 % bootstrap interval):")
print(show8.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
show9 = table9[["image", "method", "n", "expected_nnd", "observed_nnd", "statistic",
                "critical_value", "p_value", "classification"]]
print("\nTable 9 (nearest-neighbour distances in nm; BioVoxxel gives no p-value):")
print(show9.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
# BioVoxxel compares nm distances with an expectation from the area in pixels, so on calibrated
# images it calls almost any pattern "self-avoiding"; Clark-Evans works in one unit and corrects
# for the window's edges (README, "Spatial distribution").
print("BioVoxxel's expected distance mixes nm and pixel units (as the plugin does); Clark-Evans is "
      "the test to read.")

particles.to_csv(OUT / "thesis_particles.csv", index=False)
table8.to_csv(OUT / "thesis_table8.csv", index=False)
table9.to_csv(OUT / "thesis_table9.csv", index=False)

# Figure: the ECD distribution of each image, with its median
fig, axes = plt.subplots(1, len(images), figsize=(4.2 * len(images), 3.6), sharex=True,
                         squeeze=False)
bins = np.linspace(0, particles["ECD"].quantile(0.995) * 1.05, 30)
for ax, row in zip(axes[0], table8.itertuples()):
    ecd = particles.loc[particles["image"] == row.image, "ECD"]
    ax.hist(ecd, bins=bins, color="0.6", edgecolor="0.3")
    ax.axvline(row.ECD_median, color="C3")
    ax.axvspan(row.ECD_median_ci_low, row.ECD_median_ci_high, color="C3", alpha=0.2)
    ax.set_title(f"{row.image}: {row.particles} particles, median {row.ECD_median:.0f} nm", fontsize=10)
    ax.set_xlabel("ECD (nm)")
axes[0][0].set_ylabel("particles")
fig.suptitle("ECD per image (bundled U-Net; red: median and its 95 % bootstrap interval)", fontsize=10)
fig.tight_layout()
fig.savefig(OUT / "thesis_ecd_histograms.png", dpi=110)
print(f"\nwrote {OUT / 'thesis_ecd_histograms.png'} and the CSV tables")
