"""Segmentation and particle-detection metrics on numpy arrays.

Pixel metrics (:func:`iou`, :func:`dice`) compare two boolean masks. Particle metrics compare label
images (0 = background, one positive integer per particle); boolean masks are turned into label
images with :func:`tio2fiji.instances.connected_components` (4-connectivity by default, because
the BAM reference masks separate touching particles by 1-pixel gaps that only 4-connectivity respects).

Conventions, stated once and used everywhere:

* **Empty versus empty.** Two empty masks agree perfectly: IoU and Dice are 1.0. An empty
  prediction of a non-empty truth (or the reverse) scores 0.0. The same holds for the particle
  metrics: no ground-truth particles and no predicted particles give instance IoU 1.0 and AP 1.0;
  predicted particles where there are none give AP 0.0.
* **Averaging.** ``mean_iou`` and ``mean_dice`` are per-image scores averaged over images, as the
  thesis reports its "mean IoU" on the test images. ``instance_iou`` (ground-truth centred: each
  manual particle's best IoU with a predicted one) pools all manual particles of all images, so
  crowded images weigh more; ``prediction_iou`` (prediction centred, the per-instance IoU of BAM's
  ``Calculate_Scores.py``: each predicted particle's best IoU with a manual one; missed particles
  do not count) pools all predicted particles. ``precision``, ``recall``, ``f1`` and panoptic
  quality ``pq`` pool the true/false positives and false negatives of all images (as StarDist's
  ``matching_dataset``). ``count_error`` is the mean over images of
  ``|n_pred - n_gt| / max(n_gt, 1)`` (so a prediction of 3 particles where there are none counts
  3.0); the size agreement (median/D10/D90 ECD errors, Kolmogorov-Smirnov distance) is a mean over
  images too.
* **Matching.** For precision, recall, F1 and PQ, a (manual, predicted) pair with IoU *above* 0.5
  is a match; such pairs are one-to-one by construction (:func:`matched_pairs`). A predicted
  particle is a true positive for the PASCAL VOC AP when its IoU with a
  not-yet-matched ground-truth particle *exceeds* 0.5 (VOC devkit: ``ovmax > 0.5``); predictions are
  taken in decreasing score. COCO AP follows pycocotools (IoU >= threshold, thresholds 0.50:0.95).
* **Error anatomy.** Each unmatched manual particle is ``missed``, ``merged``, ``split`` or
  ``boundary_only``, each false particle a ``merger``, ``piece`` or ``spurious`` (rules in
  :func:`error_anatomy`); ``evaluate_images(min_size=10)`` drops objects under 10 px on both
  sides first, as BAM's scorer.
* **Scores.** A predicted particle's score is its mean probability (``probs``). Without
  probabilities every particle scores 1.0 and AP describes the hard prediction: ties are evaluated as
  one operating point in :func:`voc11_ap`.
"""

from ._anatomy import GT_CAUSES, PRED_CAUSES, SIZE_CLASSES, anatomy_labels, error_anatomy, pool_anatomy, size_class
from ._ap import ap50_voc11, coco_ap, match_detections, rle_from_labels, voc11_ap
from ._evaluate import BAM_MIN_SIZE, evaluate_images, per_image_frame
from ._matching import (
                        InstanceMatch,
                        best_iou_per_gt,
                        best_iou_per_pred,
                        count_error,
                        instance_iou,
                        instance_scores,
                        match_counts,
                        match_instances,
                        matched_pairs,
                        prediction_iou,
)
from ._pixels import dice, iou
from ._sizes import SIZE_QUANTILES, ecd_of_labels, size_errors

__all__ = [
    "iou", "dice", "InstanceMatch", "match_instances", "best_iou_per_gt",
    "instance_iou", "match_detections", "voc11_ap", "ap50_voc11", "coco_ap", "count_error",
    "rle_from_labels", "evaluate_images", "per_image_frame", "best_iou_per_pred", "matched_pairs",
    "match_counts", "instance_scores", "prediction_iou", "SIZE_QUANTILES", "ecd_of_labels",
    "size_errors", "GT_CAUSES", "PRED_CAUSES", "SIZE_CLASSES", "anatomy_labels", "error_anatomy",
    "pool_anatomy", "size_class", "BAM_MIN_SIZE",
]
