"""A/B statistics: known answers from hand computation or scipy, the decision, degenerate input."""

import json
import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recsys import abstats

ALPHA, SRM_ALPHA = 0.05, 0.001


def per_user(control_likes, test_likes) -> pd.DataFrame:
    likes = np.concatenate([np.asarray(control_likes, dtype=int), np.asarray(test_likes, dtype=int)])
    groups = ["control"] * len(control_likes) + ["test"] * len(test_likes)
    return pd.DataFrame({"exp_group": groups, "attributed_likes": likes, "hit": likes > 0})


def analyse(frame, **options):
    return abstats.analyse(frame, test_share=0.5, alpha=ALPHA, srm_alpha=SRM_ALPHA, **options)


def test_srm_chi_square_matches_hand_computation_and_alerts():
    srm = abstats.srm_check(9_600, 10_400, test_share=0.5, alpha=SRM_ALPHA)
    assert srm["expected_control"] == srm["expected_test"] == 10_000
    assert srm["chi2"] == pytest.approx(400**2 / 10_000 * 2)  # 32.0
    assert srm["p_value"] == pytest.approx(stats.chi2.sf(32.0, df=1))
    assert srm["alert"]


def test_srm_uses_the_configured_share():
    srm = abstats.srm_check(2_900, 7_100, test_share=0.7, alpha=SRM_ALPHA)
    assert srm["chi2"] == pytest.approx(100**2 / 3_000 + 100**2 / 7_000)
    assert not srm["alert"]


def test_srm_rejects_a_share_without_two_groups():
    with pytest.raises(ValueError, match="test_share"):
        abstats.srm_check(10, 0, test_share=0.0, alpha=SRM_ALPHA)


def test_welch_difference_and_ci_match_hand_computation():
    control, test = np.array([0, 1, 1, 2, 5, 0, 3.0]), np.array([1, 2, 4, 0, 3, 6, 2, 2.0])
    var_c, var_t = control.var(ddof=1) / len(control), test.var(ddof=1) / len(test)
    se = math.sqrt(var_c + var_t)
    df = (var_c + var_t) ** 2 / (var_c**2 / (len(control) - 1) + var_t**2 / (len(test) - 1))  # Welch-Satterthwaite
    diff = test.mean() - control.mean()
    half_width = stats.t.ppf(0.975, df) * se

    result = abstats.welch(control, test, alpha=0.05)

    assert result["diff"] == pytest.approx(diff)
    assert result["df"] == pytest.approx(df)
    assert result["statistic"] == pytest.approx(diff / se)
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(abs(diff / se), df))
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((diff - half_width, diff + half_width))
    pooled_sd = math.sqrt((6 * control.var(ddof=1) + 7 * test.var(ddof=1)) / 13)
    assert result["cohens_d"] == pytest.approx(diff / pooled_sd)
    assert result["relative_lift"] == pytest.approx(diff / control.mean())


def test_mann_whitney_matches_scipy():
    control, test = [0, 0, 1, 2, 2, 3, 7], [0, 1, 2, 3, 4, 4, 5, 9]
    expected = stats.mannwhitneyu(test, control, alternative="two-sided")
    result = abstats.mann_whitney(control, test)
    assert result["statistic"] == pytest.approx(expected.statistic)
    assert result["p_value"] == pytest.approx(expected.pvalue)


def test_rank_biserial_by_hand():
    # Pairs (test, control): test wins 7 of 9, loses 1 (3 < 4), ties 1 (4 = 4): U = 7.5.
    result = abstats.mann_whitney(control=[1, 2, 4], test=[3, 4, 5])
    assert result["statistic"] == pytest.approx(7.5)
    assert result["common_language"] == pytest.approx(7.5 / 9)
    assert result["rank_biserial"] == pytest.approx((7 - 1) / 9)


def test_power_is_alpha_without_effect_and_80_percent_at_the_textbook_shift():
    assert abstats.power_two_sample(0.0, 1.0, 1.0, 100, 100, 0.05) == pytest.approx(0.05)
    se = math.sqrt(2.0**2 / 400 + 3.0**2 / 600)
    shift = (stats.norm.ppf(0.975) + stats.norm.ppf(0.80)) * se
    assert abstats.power_two_sample(shift, 2.0, 3.0, 400, 600, 0.05) == pytest.approx(0.80, abs=1e-4)


def poisson_groups(control_mean, test_mean, users=3_000, seed=0):
    rng = np.random.default_rng(seed)
    return per_user(rng.poisson(control_mean, users), rng.poisson(test_mean, users))


def test_clear_positive_lift_ships_test():
    analysis = analyse(poisson_groups(2.0, 2.4))
    assert analysis["verdict"] == "ship test"
    assert analysis["metrics"]["attributed_likes"]["welch"]["p_value"] < 1e-6


def test_clear_negative_lift_keeps_control():
    assert analyse(poisson_groups(2.4, 2.0))["verdict"] == "keep control"


def test_identical_distributions_are_no_significant_difference():
    likes = np.random.default_rng(3).poisson(2.0, 3_000)
    analysis = analyse(per_user(likes, likes))
    assert analysis["verdict"] == "no significant difference"
    assert analysis["metrics"]["attributed_likes"]["welch"]["p_value"] == pytest.approx(1.0)


def test_52_48_split_on_20000_users_is_invalid_whatever_the_lift():
    rng = np.random.default_rng(4)
    analysis = analyse(per_user(rng.poisson(2.0, 9_600), rng.poisson(3.0, 10_400)), bootstrap_resamples=0)
    assert analysis["srm"]["alert"]
    assert analysis["verdict"] == "invalid (SRM)"
    assert "Sample ratio mismatch" in analysis["reasons"][0]


def test_secondary_disagreement_is_reported_but_does_not_decide():
    # Same mean (1.0): control has a few heavy likers, test many light ones. Mann-Whitney sees test
    # ranking higher; the primary test on the mean sees nothing.
    frame = per_user([0] * 900 + [10] * 100, [0] * 500 + [2] * 500)
    analysis = analyse(frame, bootstrap_resamples=0)
    assert analysis["verdict"] == "no significant difference"
    assert analysis["metrics"]["attributed_likes"]["mann_whitney"]["p_value"] < 1e-6
    assert any("Mann-Whitney" in reason and "DISAGREES" in reason for reason in analysis["reasons"])


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (per_user([0] * 500, [0] * 500), "no variance in either group"),
        (per_user([1, 0, 2, 0, 1], []), "test group has 0 user(s)"),
        (per_user([3], [1]), "control group has 1 user(s)"),
        (per_user([], []), "No users"),
    ],
    ids=["no-likes-at-all", "empty-test-group", "one-user-each", "no-users"],
)
def test_degenerate_input_is_no_significant_difference_with_a_reason(frame, reason):
    analysis = analyse(frame)
    assert analysis["verdict"] == "no significant difference"
    assert any(reason in sentence for sentence in analysis["reasons"])
    json.dumps(analysis, allow_nan=False)  # no NaN anywhere
    assert len(abstats.results_rows(analysis)) == 6


def test_an_empty_group_among_many_users_is_an_srm():
    assert analyse(per_user([1, 0, 2] * 100, []))["verdict"] == "invalid (SRM)"


@pytest.mark.parametrize("column", ["exp_group", "attributed_likes", "hit"])
def test_missing_required_column_is_named(column):
    frame = poisson_groups(2.0, 2.0, users=10).drop(columns=column)
    with pytest.raises(ValueError, match=column):
        analyse(frame)


def test_unknown_group_and_negative_likes_are_rejected():
    frame = poisson_groups(2.0, 2.0, users=10)
    with pytest.raises(ValueError, match="exp_group"):
        analyse(frame.assign(exp_group="treatment"))
    with pytest.raises(ValueError, match="attributed_likes"):
        analyse(frame.assign(attributed_likes=-1))


def test_bootstrap_ci_brackets_the_welch_ci_centre_on_a_large_sample():
    analysis = analyse(poisson_groups(2.0, 2.05, users=20_000, seed=5))
    for metric in ("attributed_likes", "hit_rate"):
        welch, boot = analysis["metrics"][metric]["welch"], analysis["metrics"][metric]["bootstrap"]
        centre = (welch["ci_low"] + welch["ci_high"]) / 2
        assert boot["ci_low"] < centre < boot["ci_high"]
        assert boot["ci_high"] - boot["ci_low"] == pytest.approx(welch["ci_high"] - welch["ci_low"], rel=0.1)


def test_bootstrap_never_changes_the_verdict():
    frame = poisson_groups(2.0, 2.1, users=2_000, seed=6)
    with_bootstrap, without = analyse(frame, bootstrap_resamples=500), analyse(frame, bootstrap_resamples=0)
    assert with_bootstrap["verdict"] == without["verdict"]
    assert "skipped" in without["reasons"][-1]


def test_results_rows_are_one_per_metric_and_test_and_read_back_from_duckdb(tmp_path):
    frame = poisson_groups(2.0, 2.4).assign(exposures=20, likes=lambda f: f["attributed_likes"] + 1)
    analysis = analyse(frame, bootstrap_resamples=200)
    assert analysis["groups"]["test"]["mean_exposures"] == 20
    json.dumps(analysis, allow_nan=False)
    rows = abstats.results_rows(analysis)
    path = tmp_path / "results.parquet"
    rows.to_parquet(path)
    read = duckdb.sql(f"SELECT metric, test, \"primary\", verdict FROM '{path}' ORDER BY ALL").fetchall()
    assert read == [
        ("attributed_likes", "bootstrap", False, "ship test"),
        ("attributed_likes", "mann_whitney_u", False, "ship test"),
        ("attributed_likes", "welch_t", True, "ship test"),
        ("hit_rate", "bootstrap", False, "ship test"),
        ("hit_rate", "welch_t", False, "ship test"),
        ("users", "srm_chi_square", False, "ship test"),
    ]
