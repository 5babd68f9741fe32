"""Each metric on hand-made cases whose answers are worked out in the comments."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tio2fiji import metrics as M
from tio2fiji.errors import InputError
from tio2fiji.instances import connected_components, particle_scores


def squares(shape, boxes):
    """Label image with one rectangle per (y, x, h, w) box, labels 1..n in order."""
    lab = np.zeros(shape, np.int32)
    for k, (y, x, h, w) in enumerate(boxes, 1):
        lab[y:y + h, x:x + w] = k
    return lab


# ---------------------------------------------------------------------------------------- pixels


def test_iou_and_dice_of_offsetsquares():
    a = squares((30, 30), [(0, 0, 10, 10)]) > 0
    b = squares((30, 30), [(0, 5, 10, 10)]) > 0
    # overlap 10x5 = 50, union 100 + 100 - 50 = 150
    assert M.iou(a, b) == pytest.approx(50 / 150)
    assert M.dice(a, b) == pytest.approx(2 * 50 / 200)


def test_empty_conventions_for_pixels():
    z = np.zeros((5, 5), bool)
    one = z.copy()
    one[2, 2] = True
    assert M.iou(z, z) == 1.0 and M.dice(z, z) == 1.0
    assert M.iou(one, z) == 0.0 and M.dice(z, one) == 0.0


def test_valid_mask_excludes_pixels():
    a = squares((10, 10), [(0, 0, 10, 10)]) > 0
    b = squares((10, 10), [(0, 0, 10, 5)]) > 0
    valid = np.zeros((10, 10), bool)
    valid[:, :5] = True  # only the columns where both agree count
    assert M.iou(a, b) == pytest.approx(0.5)
    assert M.iou(a, b, valid=valid) == 1.0


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError):
        M.iou(np.zeros((3, 3)), np.zeros((3, 4)))


# ------------------------------------------------------------------------------------- instances


def test_match_instances_sparse_iou_values():
    gt = squares((40, 40), [(0, 0, 10, 10), (20, 20, 10, 10)])
    pred = squares((40, 40), [(0, 5, 10, 10), (20, 20, 10, 10), (35, 35, 3, 3)])
    m = M.match_instances(pred, gt)
    assert (m.n_gt, m.n_pred) == (2, 3)
    dense = m.iou.toarray()
    expected = np.array([[50 / 150, 0, 0], [0, 1.0, 0]])
    np.testing.assert_allclose(dense, expected)
    assert m.iou.nnz == 2  # only overlapping pairs stored
    np.testing.assert_array_equal(m.gt_area, [100, 100])
    np.testing.assert_array_equal(m.pred_area, [100, 100, 9])


def test_match_instances_sort_path_equals_bincount_path(monkeypatch):
    rng = np.random.default_rng(3)
    gt = connected_components(rng.random((60, 60)) > 0.55)
    pred = connected_components(rng.random((60, 60)) > 0.55)
    a = M.match_instances(pred, gt).iou.toarray()
    from tio2fiji.metrics import _matching

    monkeypatch.setattr(_matching, "_MAX_BINCOUNT_CELLS", 0)
    b = M.match_instances(pred, gt).iou.toarray()
    np.testing.assert_array_equal(a, b)


def test_match_instances_accepts_any_label_values():
    gt = squares((20, 20), [(0, 0, 4, 4), (10, 10, 4, 4)]) * 7  # labels 7 and 14
    pred = gt.copy()
    m = M.match_instances(pred, gt)
    np.testing.assert_allclose(m.iou.toarray(), np.eye(2))


def test_uint8_masks_are_labelled_not_taken_as_one_label():
    gt = (squares((20, 20), [(0, 0, 4, 4), (10, 10, 4, 4)]) > 0).astype(np.uint8) * 255
    m = M.match_instances(gt, gt)
    assert m.n_gt == 2 and m.n_pred == 2


def test_connectivity_4_separates_diagonal_particles():
    mask = np.zeros((6, 6), bool)
    mask[0:2, 0:2] = True
    mask[2:4, 2:4] = True  # touches the first only at a corner
    assert connected_components(mask, 4).max() == 2
    assert connected_components(mask, 8).max() == 1


def test_instance_iou_mean_over_ground_truth():
    gt = squares((40, 40), [(0, 0, 10, 10), (20, 20, 10, 10), (0, 30, 5, 5)])
    # particle 1 exact; particle 2 predicted as its left half (IoU 0.5); particle 3 missed (0)
    pred = squares((40, 40), [(0, 0, 10, 10), (20, 20, 10, 5)])
    assert M.instance_iou(pred, gt) == pytest.approx((1 + 0.5 + 0) / 3)
    z = np.zeros((5, 5), np.int32)
    assert M.instance_iou(z, z) == 1.0
    assert M.instance_iou(squares((5, 5), [(0, 0, 2, 2)]), z) == 0.0


def test_count_error():
    assert M.count_error(3, 4) == pytest.approx(0.25)
    assert M.count_error([3, 5], [4, 5]) == pytest.approx(0.125)  # mean over images
    assert M.count_error(0, 0) == 0.0
    assert M.count_error(3, 0) == 3.0  # relative to max(n_gt, 1)


def test_particle_scores_are_mean_probabilities():
    lab = squares((4, 4), [(0, 0, 2, 2), (2, 2, 2, 2)])
    probs = np.zeros((4, 4))
    probs[0:2, 0:2] = [[0.2, 0.4], [0.6, 0.8]]
    probs[2:4, 2:4] = 1.0
    np.testing.assert_allclose(particle_scores(lab, probs), [0.5, 1.0])


# ------------------------------------------------------------------------------------------ VOC


def test_voc11_ap_hand_computed():
    # ranked: TP, FP, TP, TP, FP with 4 objects
    # precision 1, 1/2, 2/3, 3/4, 3/5 at recall .25, .25, .5, .75, .75
    # p_interp: r = 0, .1, .2 -> 1; r = .3 ... .7 -> 3/4; r = .8, .9, 1 -> 0
    ap = M.voc11_ap([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 1, 0], n_gt=4)
    assert ap == pytest.approx((3 * 1 + 5 * 0.75) / 11)


def test_voc11_ap_exact_recall_levels():
    # 3 of 10 found with precision 1: recall exactly 0.3 must reach the 0.3 level -> 4 levels
    assert M.voc11_ap([1, 0.9, 0.8], [1, 1, 1], n_gt=10) == pytest.approx(4 / 11)


def test_voc11_ap_ties_are_one_operating_point():
    # equal scores: precision 1/2 at recall 1/2 whatever the order -> levels 0..0.5 (6) at 0.5
    assert M.voc11_ap([1, 1], [1, 0], 2) == pytest.approx(6 * 0.5 / 11)
    assert M.voc11_ap([1, 1], [0, 1], 2) == pytest.approx(6 * 0.5 / 11)


def test_voc11_ap_empty_conventions():
    assert M.voc11_ap([], [], 0) == 1.0
    assert M.voc11_ap([0.5], [False], 0) == 0.0
    assert M.voc11_ap([], [], 3) == 0.0


def test_match_detections_needs_iou_above_half():
    gt = squares((30, 30), [(0, 0, 10, 10), (20, 0, 10, 10)])
    # pred 1 covers the left half of particle 1 (IoU exactly 0.5: VOC needs more, a FP);
    # pred 2 covers 6 of 10 columns of particle 2 (IoU 0.6, a TP)
    pred = squares((30, 30), [(0, 0, 10, 5), (20, 0, 10, 6)])
    m = M.match_instances(pred, gt)
    np.testing.assert_array_equal(M.match_detections(m, scores=[0.9, 0.1]), [False, True])
    np.testing.assert_array_equal(M.match_detections(m, iou_threshold=0.4), [True, True])


def test_ap50_voc11_over_images():
    gt = [squares((20, 20), [(0, 0, 5, 5), (10, 10, 5, 5)]), squares((20, 20), [(0, 0, 5, 5)])]
    # image 1: both found; image 2: one false positive and the particle missed
    pred = [gt[0].copy(), squares((20, 20), [(12, 12, 5, 5)])]
    scores = [np.array([0.9, 0.8]), np.array([0.95])]
    # ranked: FP (.95), TP, TP with 3 objects: precision 0, 1/2, 2/3 at recall 0, 1/3, 2/3
    # levels 0..0.3 -> 2/3 (max over recall >= r), 0.4..0.6 -> 2/3, 0.7..1 -> 0 => 7 * 2/3 / 11
    assert M.ap50_voc11(pred, gt, scores) == pytest.approx(7 * (2 / 3) / 11)


# ----------------------------------------------------------------------------------------- COCO


def test_rle_from_labels_equals_pycocotools_encode():
    rng = np.random.default_rng(1)
    lab = connected_components(rng.random((37, 29)) > 0.6)
    rles = M.rle_from_labels(lab)
    assert len(rles) == lab.max()
    for k, r in enumerate(rles, 1):
        ref = mask_utils.encode(np.asfortranarray((lab == k).astype(np.uint8)))
        assert r["counts"] == ref["counts"].decode()
        assert r["size"] == [37, 29]


def test_coco_ap_perfect_prediction_is_one():
    gt = squares((40, 40), [(0, 0, 10, 10), (20, 20, 8, 8), (5, 25, 3, 6)])
    res = M.coco_ap([gt.copy()], [gt], [np.array([0.9, 0.8, 0.7])])
    assert res["ap"] == pytest.approx(1.0) and res["ap50"] == pytest.approx(1.0)


def test_coco_ap_known_partial_case():
    gt = squares((40, 40), [(0, 0, 10, 10), (20, 20, 10, 10)])
    # pred 1 = particle 1 exactly (score .9); pred 2 = an 8x8 square inside particle 2 (IoU .64,
    # score .8): a match at IoU thresholds .50, .55, .60 (AP 1 there) but not from .65 on, where
    # the ranking is TP, FP: recall 1/2 at precision 1 -> 51 of COCO's 101 recall points
    pred = squares((40, 40), [(0, 0, 10, 10), (21, 21, 8, 8)])
    scores = [np.array([0.9, 0.8])]
    half = 51 / 101
    res = M.coco_ap([pred], [gt], scores)
    assert res["ap50"] == pytest.approx(1.0)
    assert res["ap75"] == pytest.approx(half)
    assert res["ap"] == pytest.approx((3 * 1.0 + 7 * half) / 10)
    assert M.coco_ap([pred], [gt], scores, decompose=False) == pytest.approx(res)


def test_coco_ap_decomposition_matches_whole_image_pycocotools():
    rng = np.random.default_rng(7)
    gts, preds, scores = [], [], []
    for _ in range(3):
        boxes = [(int(y), int(x), int(h), int(w)) for y, x, h, w in
                 zip(rng.integers(0, 70, 20), rng.integers(0, 70, 20), rng.integers(2, 9, 20),
                     rng.integers(2, 9, 20))]
        g = squares((80, 80), boxes)
        p = np.roll(g, int(rng.integers(-1, 2)), axis=1) > 0
        p[rng.random(p.shape) > 0.98] = True
        pl = connected_components(p)
        gts.append(g)
        preds.append(pl)
        scores.append(rng.random(int(pl.max())))  # distinct scores: no tie-order ambiguity
    a = M.coco_ap(preds, gts, scores, decompose=True)
    b = M.coco_ap(preds, gts, scores, decompose=False)
    assert a == pytest.approx(b)
    assert 0 < a["ap"] < a["ap50"] < 1


def test_coco_ap_empty_conventions():
    z = np.zeros((10, 10), np.int32)
    one = squares((10, 10), [(0, 0, 3, 3)])
    assert M.coco_ap([z], [z])["ap"] == 1.0
    assert M.coco_ap([one], [z])["ap"] == 0.0
    assert M.coco_ap([z], [one])["ap"] == 0.0


# ------------------------------------------------------------------------------- evaluate_images


def test_evaluate_images_perfect_prediction(capsys):
    gt = squares((50, 50), [(0, 0, 10, 10), (20, 20, 10, 10), (40, 5, 6, 6)]) > 0
    probs = gt * 0.9
    res = M.evaluate_images([gt.copy()], [gt], probs=[probs], names=["a"])
    for key in ("mean_iou", "mean_dice", "ap50_voc11", "coco_ap", "coco_ap50", "instance_iou"):
        assert res[key] == pytest.approx(1.0), key
    assert res["count_error"] == 0.0
    assert res["per_image"]["n_gt"] == [3] and res["per_image"]["name"] == ["a"]
    json.dumps(res)  # JSON-ready
    assert capsys.readouterr().out == ""  # pycocotools' prints are swallowed


def test_evaluate_images_known_values_and_per_image_lists():
    g1 = squares((30, 30), [(0, 0, 10, 10)]) > 0
    p1 = squares((30, 30), [(0, 5, 10, 10)]) > 0  # IoU 1/3, a miss at 0.5
    g2 = squares((30, 30), [(0, 0, 4, 4), (10, 10, 4, 4), (20, 20, 4, 4), (25, 0, 4, 4)]) > 0
    p2 = squares((30, 30), [(0, 0, 4, 4), (10, 10, 4, 4), (20, 20, 4, 4)]) > 0  # 3 of 4
    res = M.evaluate_images([p1, p2], [g1, g2])
    assert res["per_image"]["iou"] == pytest.approx([1 / 3, 48 / 64])
    assert res["mean_iou"] == pytest.approx((1 / 3 + 0.75) / 2)
    assert res["mean_dice"] == pytest.approx((0.5 + 2 * 48 / (48 + 64)) / 2)
    assert res["per_image"]["count_error"] == pytest.approx([0.0, 0.25])
    # pooled over the 5 ground-truth particles: 1/3, 1, 1, 1, 0
    assert res["instance_iou"] == pytest.approx((1 / 3 + 3) / 5)
    assert res["per_image"]["instance_iou"] == pytest.approx([1 / 3, 0.75])
    assert set(res) >= {"mean_iou", "mean_dice", "ap50_voc11", "coco_ap", "coco_ap50",
                        "instance_iou", "count_error", "per_image"}
    assert len(M.per_image_frame(res)) == 2


def test_evaluate_images_many_particles_is_fast():
    import time

    g = np.zeros((600, 600), np.int32)
    k = 0
    for y in range(0, 594, 8):
        for x in range(0, 594, 8):
            k += 1
            g[y:y + 6, x:x + 6] = k
    p = np.roll(g, 1, axis=1)  # IoU 30/42 for every particle
    t = time.perf_counter()
    res = M.evaluate_images([p > 0], [g > 0], coco=False)
    assert time.perf_counter() - t < 5
    assert res["per_image"]["n_gt"] == [k] and k > 5000
    assert res["instance_iou"] == pytest.approx(30 / 42)
    assert res["ap50_voc11"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------
# one-to-one matching at IoU 0.5, panoptic quality, prediction-centred IoU, size agreement


def test_f1_and_panoptic_quality_by_hand():
    # gt: three 4x4 squares. pred: the first exactly; the second shifted by one column
    # (intersection 12, union 20: IoU 0.6); a 2x4 half of the third (IoU 0.5, not above 0.5:
    # no match); one extra particle where there is none.
    gt = squares((20, 40), [(0, 0, 4, 4), (0, 10, 4, 4), (0, 20, 4, 4)])
    pred = squares((20, 40), [(0, 0, 4, 4), (0, 11, 4, 4), (0, 20, 2, 4), (10, 30, 3, 3)])
    m = M.match_instances(pred, gt)
    gi, pj, ious = M.matched_pairs(m)
    assert sorted(zip(gi.tolist(), pj.tolist())) == [(0, 0), (1, 1)]
    np.testing.assert_allclose(sorted(ious), [0.6, 1.0])
    counts = M.match_counts(m)
    assert (counts["tp"], counts["fp"], counts["fn"]) == (2, 2, 1)
    s = M.instance_scores(**counts)
    assert s["precision"] == pytest.approx(2 / 4) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1)) == s["rq"]
    assert s["sq"] == pytest.approx(0.8) and s["pq"] == pytest.approx(0.8 * 4 / 7)
    # prediction-centred IoU (BAM): mean over the 4 predictions of their best IoU; the missed
    # third particle does not lower it, the extra one does
    assert M.prediction_iou(pred, gt) == pytest.approx((1.0 + 0.6 + 0.5 + 0.0) / 4)
    # ground-truth centred: the best IoU of each of the 3 manual particles
    assert M.instance_iou(pred, gt) == pytest.approx((1.0 + 0.6 + 0.5) / 3)


def test_a_merged_prediction_matches_at_most_one_particle():
    gt = squares((10, 20), [(0, 0, 4, 4), (0, 4, 4, 4)])  # touching squares
    merged = (gt > 0).astype(np.int32) * 7  # one label over both: IoU 0.5 with each, no match
    counts = M.match_counts(M.match_instances(merged, gt))
    assert (counts["tp"], counts["fp"], counts["fn"]) == (0, 1, 2)
    big = squares((10, 20), [(0, 0, 4, 5)])  # covers the first (IoU 16/20) and a column of the second
    gi, pj, _ = M.matched_pairs(M.match_instances(big, gt))
    assert gi.tolist() == [0] and pj.tolist() == [0]
    with pytest.raises(InputError):
        M.matched_pairs(M.match_instances(big, gt), iou_threshold=0.3)


def test_instance_scores_of_empty_images():
    assert M.instance_scores(0, 0, 0, 0.0)["pq"] == 1.0
    none_found = M.instance_scores(0, 0, 5, 0.0)
    assert none_found["recall"] == 0.0 and none_found["precision"] == 0.0 and none_found["pq"] == 0.0
    empty = np.zeros((8, 8), np.int32)
    assert M.prediction_iou(empty, empty) == 1.0
    assert M.prediction_iou(empty, squares((8, 8), [(1, 1, 3, 3)])) == 0.0


def test_size_errors_by_hand():
    # sides 2, 4, 6, 8 (ECD proportional to the side) against sides 4, 4, 8, 8
    pred = squares((30, 60), [(0, 0, 2, 2), (0, 10, 4, 4), (0, 20, 6, 6), (0, 30, 8, 8)])
    gt = squares((30, 60), [(0, 0, 4, 4), (0, 10, 4, 4), (10, 20, 8, 8), (10, 40, 8, 8)])
    k = 2 / np.sqrt(np.pi)  # ECD of a square of side s is s * 2 / sqrt(pi)
    np.testing.assert_allclose(M.ecd_of_labels(gt), k * np.array([4, 4, 8, 8]))
    e = M.size_errors(M.ecd_of_labels(pred), M.ecd_of_labels(gt))
    assert e["count_error_signed"] == 0.0
    assert e["median_ecd_error"] == pytest.approx(abs(5 - 6) / 6)  # medians 5 and 6 sides
    assert e["d10_ecd_error"] == pytest.approx(abs(2.6 - 4) / 4)  # numpy linear quantiles
    assert e["d90_ecd_error"] == pytest.approx(abs(7.4 - 8) / 8)
    # empirical CDFs: at side 2 pred 1/4, gt 0; at 4 pred 2/4, gt 2/4; at 6 pred 3/4, gt 2/4
    assert e["ks_distance"] == pytest.approx(0.25)
    e = M.size_errors([1.0, 2.0], [])
    assert e["count_error_signed"] == 2.0 and np.isnan(e["median_ecd_error"]) and np.isnan(e["ks_distance"])


def test_evaluate_images_pools_matches_and_carries_every_metric_per_image():
    gt1 = squares((20, 40), [(0, 0, 4, 4), (0, 10, 4, 4), (0, 20, 4, 4)])
    pred1 = squares((20, 40), [(0, 0, 4, 4), (0, 11, 4, 4), (0, 20, 2, 4), (10, 30, 3, 3)])
    gt2 = squares((20, 40), [(5, 5, 6, 6)])
    pred2 = gt2.copy()
    res = M.evaluate_images([pred1, pred2], [gt1, gt2], names=["a", "b"], coco=False)
    # pooled: tp 2 + 1, fp 2 + 0, fn 1 + 0, summed IoU 1.6 + 1.0
    assert res["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert res["pq"] == pytest.approx((2.6 / 3) * (3 / (3 + 1.5)))
    assert res["precision"] == pytest.approx(3 / 5) and res["recall"] == pytest.approx(3 / 4)
    assert res["prediction_iou"] == pytest.approx((1.0 + 0.6 + 0.5 + 0.0 + 1.0) / 5)
    per = res["per_image"]
    assert per["tp"] == [2, 1] and per["fp"] == [2, 0] and per["fn"] == [1, 0]
    assert per["f1"][1] == 1.0 and per["pq"][1] == 1.0 and per["ks_distance"][1] == 0.0
    assert res["median_ecd_error"] == pytest.approx(np.mean(per["median_ecd_error"]))
    table = M.per_image_frame(res)
    for col in ("precision", "recall", "f1", "pq", "prediction_iou", "count_error_signed",
                "median_ecd_error", "d10_ecd_error", "d90_ecd_error", "ks_distance"):
        assert col in table.columns and col in res
    json.dumps(res)  # JSON-ready
