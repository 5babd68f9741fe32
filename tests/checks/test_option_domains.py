"""Issue 15, case 5: every numeric option has one domain (tio2fiji.checks), checked by the library
and the command line alike; a Monte Carlo test that cannot reach significance says "not testable"
with the smallest p its simulation count allows, never "random"."""

import math
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import tio2fiji.distribution as D
from tio2fiji.checks import (
    DOMAINS,
    ResultWarning,
    check_option,
    min_n_sim,
    significance_note,
    smallest_p_value,
)
from tio2fiji.cli import main
from tio2fiji.errors import InputError
from tio2fiji.report import bootstrap_ci
from tio2fiji.run import distribution_files, measure_files, segment_files


def clustered_points():
    # 200 points in 4 tight clusters of a 1000 x 1000 window: Clark-Evans p ~ 1e-20 or smaller
    rng = np.random.default_rng(3)
    centres = np.array([[200, 200], [800, 200], [200, 800], [800, 800]])
    return (centres[rng.integers(0, 4, 200)] + rng.normal(0, 5, (200, 2))).clip(0, 1000)


@pytest.mark.parametrize("value", [-1, 0, 1, 1.5, math.nan, math.inf, "x"])
def test_alpha_outside_0_1_is_refused_with_the_one_message_format(value):
    with pytest.raises(InputError) as exc:
        check_option("alpha", value)
    shown = value if isinstance(value, str) else repr(value)
    assert str(exc.value) == f"alpha must be a number in (0, 1), got {shown} (e.g. 0.05)."


def test_domains_by_hand():
    assert check_option("alpha", 0.05) == 0.05 and check_option("alpha", "0.01") == 0.01
    assert check_option("n_sim", 40) == 40 and check_option("n_sim", 40.0) == 40
    assert check_option("threads", 0) == 0  # 0: torch's choice
    assert check_option("threshold", None) is None  # the default
    for name, bad in [("n_sim", 0), ("n_sim", 2.5), ("seed", -1), ("threshold", 1.01),
                      ("threshold", math.nan), ("mask_threshold", 1.0), ("lr", 0.0), ("lr", math.inf),
                      ("threads", -1), ("overlap", -1), ("epochs", 0), ("n_rays", 2),
                      ("pixel_size_m", 0.0), ("gray_threshold", -1), ("n_sim", True)]:
        with pytest.raises(InputError, match=f"^{name} must be "):
            check_option(name, bad)
    assert DOMAINS["alpha"].text() == "a number in (0, 1)"
    assert DOMAINS["n_sim"].text() == "an integer >= 1"


def test_smallest_p_and_min_n_sim_by_hand():
    assert smallest_p_value(1) == 1.0 and smallest_p_value(19) == pytest.approx(0.1)
    assert smallest_p_value(19, sides=1) == pytest.approx(0.05)
    # two-sided: 2 / (n + 1) < 0.05  <=>  n >= 40;  < 0.01  <=>  n >= 200
    assert min_n_sim(0.05) == 40 and min_n_sim(0.01) == 200 and min_n_sim(0.05, sides=1) == 20
    assert significance_note(40, 0.05) is None
    note = significance_note(19, 0.05)
    assert "smallest attainable p is 0.1" in note and "n_sim >= 40" in note


@pytest.mark.parametrize("alpha", [-1, 0, math.nan, 1.5])
def test_bad_alpha_is_refused_not_classified_random(alpha):
    pts = clustered_points()
    assert D.clark_evans_test(pts, (1000, 1000))["p_value"] < 1e-20  # was "random" at these alphas
    with pytest.raises(InputError, match="alpha must be"):
        D.clark_evans_test(pts, (1000, 1000), alpha=alpha)
    with pytest.raises(InputError, match="alpha must be"):
        D.monte_carlo_test(pts, (1000, 1000), n_sim=40, alpha=alpha)
    mask = np.zeros((60, 60), bool)
    mask[10:12, 10:12] = mask[40:42, 40:42] = True
    with pytest.raises(InputError, match="alpha must be"):
        D.test_distribution(mask, "clark-evans", alpha=alpha)


@pytest.mark.parametrize("n_sim", [1, 19])
def test_too_few_simulations_say_not_testable(n_sim):
    pts = clustered_points()
    with pytest.warns(ResultWarning, match="not testable"):
        res = D.monte_carlo_test(pts, (1000, 1000), n_sim=n_sim, seed=1)
    assert res["classification"] == "not testable"
    assert res["min_p_value"] == pytest.approx(min(1.0, 2 / (n_sim + 1)))
    assert "n_sim >= 40" in res["note"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResultWarning)  # enough simulations: no warning
        ok = D.monte_carlo_test(pts, (1000, 1000), n_sim=40, seed=1)
    assert ok["classification"] == "clustered" and ok["p_value"] == pytest.approx(2 / 41)
    assert ok["note"] == ""


def test_envelopes_not_testable_with_19_sims():
    pts = np.random.default_rng(8).random((50, 2)) * (400, 300)
    with pytest.warns(ResultWarning, match="n_sim >= 20"):
        env = D.envelopes(pts, (400, 300), n_sim=19, seed=4)
    assert env["G"]["classification"] == env["L"]["classification"] == "not testable"
    with pytest.raises(InputError, match="n_sim must be"):
        D.envelopes(pts, (400, 300), n_sim=0)


def test_n_sim_zero_and_negative_seed_are_refused():
    pts = clustered_points()
    with pytest.raises(InputError, match="n_sim must be an integer >= 1"):
        D.monte_carlo_test(pts, (1000, 1000), n_sim=0)
    with pytest.raises(InputError, match="seed must be"):
        D.monte_carlo_test(pts, (1000, 1000), n_sim=40, seed=-1)
    # a generator is a seed too
    assert D.monte_carlo_test(pts, (1000, 1000), n_sim=40, seed=np.random.default_rng(0))["n_sim"] == 40


def test_batch_functions_check_before_working(example_masks, tmp_path):
    with pytest.raises(InputError, match="alpha must be"):
        distribution_files(example_masks[:1], alpha=-1)
    for bad in (math.nan, math.inf, -1):
        res = measure_files(example_masks[:1], threshold=bad)
        assert not res.tables and "threshold must be a number >= 0" in res.failures[0][1]
    with pytest.raises(InputError, match="threshold must be a number in"):
        segment_files(example_masks[:1], tmp_path / "seg", threshold=math.nan)  # before the model
    with pytest.raises(InputError, match="overlap must be"):
        segment_files(example_masks[:1], tmp_path / "seg", overlap=-1)
    with pytest.raises(InputError, match="level must be"):
        bootstrap_ci([1.0, 2.0], level=1.0)


def test_analyze_checks_its_numbers_first(tmp_path, example_masks):
    from tio2fiji.run import analyze_images

    for kw, name in [({"n_sim": 0}, "n_sim"), ({"threshold": 2.0}, "threshold"),
                     ({"n_boot": 0}, "n_boot"), ({"envelope_sims": -1}, "envelope_sims")]:
        with pytest.raises(InputError, match=f"{name} must be"):
            analyze_images(example_masks[:1], tmp_path / "o", **kw)
    assert not (tmp_path / "o").exists()


def test_cli_distribution_n_sim_19_reports_not_testable(example_masks, tmp_path):
    res = CliRunner().invoke(main, ["distribution", str(example_masks[0]), "--out", str(tmp_path / "d"),
                                    "--method", "monte-carlo", "--n-sim", "19"])
    assert res.exit_code == 0, res.output
    assert "-> not testable" in res.output
    assert "warning: Monte Carlo test not testable: with n_sim=19" in res.output
    assert "-> random" not in res.output


@pytest.mark.parametrize("args,option", [
    (["--alpha", "0"], "--alpha"), (["--alpha", "1.5"], "--alpha"), (["--alpha", "nan"], "--alpha"),
    (["--n-sim", "0"], "--n-sim"), (["--threshold", "nan"], "--threshold"),
    (["--threshold", "inf"], "--threshold"), (["--threshold", "-1"], "--threshold"),
    (["--seed", "-3"], "--seed")])
def test_cli_refuses_bad_numbers_in_one_line(example_masks, tmp_path, args, option):
    res = CliRunner().invoke(main, ["distribution", str(example_masks[0]), "--out", str(tmp_path / "d"),
                                    *args])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"Error: Invalid value for '{option}': must be " in res.output
    assert not (tmp_path / "d").exists()


def test_cli_pixel_size_must_be_finite(example_masks, tmp_path):
    res = CliRunner().invoke(main, ["measure", str(example_masks[0]), "--out", str(tmp_path / "m"),
                                    "--pixel-size", "1e999nm"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.startswith("error: ") and "1e999nm" in res.output and "positive" in res.output
