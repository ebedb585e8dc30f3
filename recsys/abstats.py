"""A/B statistics and the decision: pure functions over one row per user.

Input: a DataFrame with ``exp_group`` ("control"/"test"), ``attributed_likes`` (int >= 0) and ``hit``
(0/1 or bool), optionally ``exposures`` and ``likes`` (summarised per group when present).

Checks, all from scipy.stats:

- sample ratio: chi-square goodness of fit of users per group against the configured split;
- attributed likes per user: Welch's t-test with the CI of test - control, Cohen's d and the relative
  lift; Mann-Whitney U (the original project's test) with the rank-biserial correlation and the
  common-language effect size; a percentile bootstrap CI of the difference in means;
- hit rate (share of users with at least one attributed like): Welch's t-test and a bootstrap CI.

CIs are at 1 - alpha (95% at the default alpha), so a CI excludes 0 exactly when its test is significant.

The decision has ONE primary test, so that its false-positive rate is alpha: Welch's t-test on
attributed likes per user, two-sided, the direction from the sign of test - control. Why Welch and not
Mann-Whitney: the goal is more likes, i.e. a higher mean (total likes = users x mean), and Welch tests
exactly that and gives a CI in likes per user; with thousands of users per group the central limit
theorem makes it accurate despite the skew (checked by simulation, docs/benchmarks.md).
Mann-Whitney tests whether one group's values tend to rank higher, a different hypothesis: with many
zeros and ties it can be significant while the mean barely moves, or miss a lift carried by heavy
likers, and it has no CI of the difference. It is reported as a secondary check, as are the hit rate
and the bootstrap; a disagreement with the primary test is named in the reasons but never changes the
verdict (letting any of several tests decide would inflate the false-positive rate). A sample-ratio
alert (p < srm_alpha) makes the result "invalid (SRM)" whatever the tests say: a broken assignment or
log biases every comparison. An empty group among many users is therefore an SRM; too few users or no
variance at all leaves the primary test undefined, which reads "no significant difference".

``paired_bootstrap_ci`` serves the nightly gate (``recsys.training``): a model against the best
baseline, both ranked for the same users.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from recsys.ab import GROUPS

SHIP, KEEP, NO_DIFFERENCE, INVALID = "ship test", "keep control", "no significant difference", "invalid (SRM)"
VERDICTS = (SHIP, KEEP, NO_DIFFERENCE, INVALID)
REQUIRED_COLUMNS = ("exp_group", "attributed_likes", "hit")
OPTIONAL_COLUMNS = ("exposures", "likes")
PRIMARY_TEST = "Welch's t-test on attributed likes per user"
CONCLUSIONS = {
    SHIP: "test gets more likes per user",
    KEEP: "control gets more likes per user",
    NO_DIFFERENCE: "no significant difference",
    INVALID: "not used because of the SRM",
}
DEFAULT_BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_BATCH_VALUES = 2_000_000  # resampled values held in memory at once
ROW_COLUMNS = {
    "metric": "string", "test": "string", "primary": "bool", "statistic": "float64", "p_value": "float64",
    "significant": "bool", "diff": "float64", "ci_low": "float64", "ci_high": "float64",
    "confidence_level": "float64", "effect_size": "float64", "effect_size_name": "string",
    "relative_lift": "float64", "df": "float64", "n_control": "int64", "n_test": "int64",
    "note": "string", "verdict": "string",
}  # fmt: skip


def analyse(
    per_user: pd.DataFrame,
    test_share: float,
    alpha: float,
    srm_alpha: float,
    bootstrap_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict:
    """Every check and the decision, as plain JSON-serialisable values.

    ``bootstrap_resamples=0`` skips the bootstrap; it is a secondary check and never changes the verdict.
    """
    control, test = split_groups(per_user)
    srm = srm_check(len(control), len(test), test_share, srm_alpha)
    likes, hits = (control["attributed_likes"], test["attributed_likes"]), (control["hit"], test["hit"])
    metrics = {
        "attributed_likes": {
            "welch": welch(*likes, alpha),
            "mann_whitney": mann_whitney(*likes),
            "bootstrap": bootstrap_diff(*likes, alpha, bootstrap_resamples, seed),
        },
        "hit_rate": {
            "welch": welch(*hits, alpha),
            "bootstrap": bootstrap_diff(*hits, alpha, bootstrap_resamples, seed),
        },
    }
    return {
        "alpha": alpha,
        "srm_alpha": srm_alpha,
        "test_share": test_share,
        "groups": {"control": group_summary(control), "test": group_summary(test)},
        "srm": srm,
        "metrics": metrics,
        **decide(srm, metrics, alpha),
    }


def split_groups(per_user: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validated numeric per-user columns, split into (control, test)."""
    missing = [column for column in REQUIRED_COLUMNS if column not in per_user.columns]
    if missing:
        raise ValueError(f"per-user data is missing required column(s): {', '.join(missing)}")
    unknown = set(per_user["exp_group"].dropna().unique()) - set(GROUPS)
    if unknown or per_user["exp_group"].isna().any():
        raise ValueError(f"column exp_group must be 'control' or 'test', found {sorted(map(str, unknown)) or 'nulls'}")
    numeric = [column for column in (*REQUIRED_COLUMNS[1:], *OPTIONAL_COLUMNS) if column in per_user.columns]
    frame = pd.DataFrame({column: _non_negative_numbers(per_user[column]) for column in numeric})
    if not frame["hit"].isin([0.0, 1.0]).all():
        raise ValueError("column hit must be 0/1 or bool")
    groups = per_user["exp_group"].to_numpy()
    return frame[groups == "control"], frame[groups == "test"]


def _non_negative_numbers(column: pd.Series) -> pd.Series:
    try:
        values = column.astype("float64")
    except (TypeError, ValueError) as error:
        raise ValueError(f"column {column.name} must be numeric: {error}") from error
    if values.isna().any() or (values < 0).any():
        raise ValueError(f"column {column.name} must have no missing or negative values")
    return values


def group_summary(group: pd.DataFrame) -> dict:
    summary = {
        "users": len(group),
        "attributed_likes": _float(group["attributed_likes"].sum()),
        "mean_attributed_likes": _mean(group["attributed_likes"]),
        "hit_rate": _mean(group["hit"]),
    }
    for column in OPTIONAL_COLUMNS:
        if column in group.columns:
            summary[column] = _float(group[column].sum())
            summary[f"mean_{column}"] = _mean(group[column])
    return summary


def srm_check(users_control: int, users_test: int, test_share: float, alpha: float) -> dict:
    """Chi-square goodness of fit of users per group against the expected split; alert when p < alpha."""
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be strictly between 0 and 1 for an A/B analysis, got {test_share}")
    total = users_control + users_test
    expected = [total * (1.0 - test_share), total * test_share]
    result = {
        "users_control": int(users_control),
        "users_test": int(users_test),
        "expected_control": expected[0],
        "expected_test": expected[1],
        "test_share": test_share,
        "alpha": alpha,
        "chi2": None,
        "p_value": None,
        "alert": False,
    }
    if total == 0:
        return result
    chi2, p_value = stats.chisquare([users_control, users_test], expected)
    return result | {"chi2": _float(chi2), "p_value": _float(p_value), "alert": bool(p_value < alpha)}


def welch(control, test, alpha: float) -> dict:
    """Welch's t-test of test - control with its CI at 1 - alpha, Cohen's d and the relative lift."""
    c, t = np.asarray(control, dtype=float), np.asarray(test, dtype=float)
    diff = t.mean() - c.mean() if len(c) and len(t) else None
    result = {
        "test": "welch_t",
        "n_control": len(c),
        "n_test": len(t),
        "mean_control": _mean(c),
        "mean_test": _mean(t),
        "sd_control": _sd(c),
        "sd_test": _sd(t),
        "diff": _float(diff),
        "relative_lift": _float(diff / c.mean()) if diff is not None and c.mean() > 0 else None,
        "cohens_d": _cohens_d(c, t),
        "confidence_level": 1.0 - alpha,
        "statistic": None,
        "p_value": None,
        "df": None,
        "ci_low": None,
        "ci_high": None,
        "undefined_reason": _welch_undefined_reason(c, t),
    }
    if result["undefined_reason"]:
        return result
    outcome = stats.ttest_ind(t, c, equal_var=False)
    ci = outcome.confidence_interval(1.0 - alpha)
    return result | {
        "statistic": _float(outcome.statistic),
        "p_value": _float(outcome.pvalue),
        "df": _float(outcome.df),
        "ci_low": _float(ci.low),
        "ci_high": _float(ci.high),
    }


def _welch_undefined_reason(c: np.ndarray, t: np.ndarray) -> str | None:
    for name, values in (("control", c), ("test", t)):
        if len(values) < 2:
            return f"the {name} group has {len(values)} user(s), at least 2 are needed"
    if c.var() == 0 and t.var() == 0:
        return f"no variance in either group (every control user has {c[0]:g}, every test user has {t[0]:g})"
    return None


def _cohens_d(c: np.ndarray, t: np.ndarray) -> float | None:
    if len(c) < 2 or len(t) < 2:
        return None
    pooled_var = ((len(c) - 1) * c.var(ddof=1) + (len(t) - 1) * t.var(ddof=1)) / (len(c) + len(t) - 2)
    return _float((t.mean() - c.mean()) / math.sqrt(pooled_var)) if pooled_var > 0 else None


def mann_whitney(control, test) -> dict:
    """Two-sided Mann-Whitney U of test against control, with the rank-biserial correlation.

    ``statistic`` is U of the test group: pairs where the test user has more, ties counting half.
    ``common_language`` = U / (n_test * n_control) = P(test > control) + P(tie) / 2;
    ``rank_biserial`` = 2 * common_language - 1, in [-1, 1], positive when test users rank higher.
    """
    c, t = np.asarray(control, dtype=float), np.asarray(test, dtype=float)
    result = {"test": "mann_whitney_u", "n_control": len(c), "n_test": len(t), "statistic": None,
              "p_value": None, "common_language": None, "rank_biserial": None, "undefined_reason": None}  # fmt: skip
    if not len(c) or not len(t):
        return result | {"undefined_reason": f"the {'control' if not len(c) else 'test'} group is empty"}
    outcome = stats.mannwhitneyu(t, c, alternative="two-sided")
    common_language = outcome.statistic / (len(t) * len(c))
    return result | {
        "statistic": _float(outcome.statistic),
        "p_value": _float(outcome.pvalue),
        "common_language": _float(common_language),
        "rank_biserial": _float(2.0 * common_language - 1.0),
    }


def bootstrap_diff(control, test, alpha: float, resamples: int, seed: int) -> dict:
    """Percentile bootstrap CI of mean(test) - mean(control), each group resampled on its own."""
    c, t = np.asarray(control, dtype=float), np.asarray(test, dtype=float)
    result = {"test": "bootstrap", "n_control": len(c), "n_test": len(t), "resamples": resamples, "seed": seed,
              "method": "percentile", "confidence_level": 1.0 - alpha, "diff": None, "ci_low": None,
              "ci_high": None, "undefined_reason": None}  # fmt: skip
    if resamples <= 0:
        return result | {"undefined_reason": "skipped (bootstrap_resamples = 0)"}
    if len(c) < 2 or len(t) < 2:
        return result | {"undefined_reason": "a group has fewer than 2 users"}
    outcome = stats.bootstrap(
        (t, c),
        _mean_diff,
        n_resamples=resamples,
        paired=False,
        vectorized=True,
        method="percentile",
        confidence_level=1.0 - alpha,
        batch=max(1, BOOTSTRAP_BATCH_VALUES // max(len(c), len(t))),
        rng=np.random.default_rng(seed),
    )
    ci = outcome.confidence_interval
    return result | {"diff": _float(t.mean() - c.mean()), "ci_low": _float(ci.low), "ci_high": _float(ci.high)}


def _mean_diff(test: np.ndarray, control: np.ndarray, axis: int = -1) -> np.ndarray:
    return test.mean(axis=axis) - control.mean(axis=axis)


def paired_bootstrap_ci(differences, resamples: int, seed: int, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of paired differences (one per unit, e.g. per user: both
    values measured on the same unit), the units resampled with replacement. Resampling the
    differences, not each side on its own, keeps the pairing, so what both sides share cancels."""
    values = np.asarray(differences, dtype=float)
    if len(values) == 0:
        raise ValueError("a paired bootstrap needs at least one difference")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    per_batch = max(1, BOOTSTRAP_BATCH_VALUES // len(values))
    for start in range(0, resamples, per_batch):
        count = min(per_batch, resamples - start)
        means[start : start + count] = values[rng.integers(0, len(values), (count, len(values)))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def decide(srm: dict, metrics: dict, alpha: float) -> dict:
    """The verdict from the SRM check and the primary test, with every check in plain English."""
    primary = metrics["attributed_likes"]["welch"]
    primary_outcome = _outcome(primary["p_value"], primary["diff"], alpha)
    if srm["alert"]:
        verdict = INVALID
    elif primary["undefined_reason"]:
        verdict = NO_DIFFERENCE
    else:
        verdict = _direction_verdict(primary_outcome)
    reasons = [
        _srm_sentence(srm),
        _primary_sentence(primary, alpha, verdict),
        _mann_whitney_sentence(metrics["attributed_likes"]["mann_whitney"], primary_outcome, alpha),
        _hit_rate_sentence(metrics["hit_rate"]["welch"], alpha),
        _bootstrap_sentence(metrics["attributed_likes"]["bootstrap"], primary_outcome),
    ]
    return {"verdict": verdict, "primary_test": PRIMARY_TEST, "reasons": reasons}


def _outcome(p_value: float | None, effect: float | None, alpha: float) -> str:
    """'+' or '-' for a significant effect in that direction, '0' for none."""
    if p_value is None or effect is None or p_value >= alpha or effect == 0:
        return "0"
    return "+" if effect > 0 else "-"


def _ci_outcome(result: dict) -> str:
    if result["ci_low"] is not None and result["ci_low"] > 0:
        return "+"
    if result["ci_high"] is not None and result["ci_high"] < 0:
        return "-"
    return "0"


def _direction_verdict(outcome: str) -> str:
    return {"+": SHIP, "-": KEEP, "0": NO_DIFFERENCE}[outcome]


def _agreement(primary_outcome: str, secondary_outcome: str) -> str:
    if primary_outcome == secondary_outcome:
        return "agrees with the primary test"
    return "DISAGREES with the primary test, which alone decides"


def _srm_sentence(srm: dict) -> str:
    if srm["chi2"] is None:
        return "No users in either group: there is nothing to compare."
    split = f"{1 - srm['test_share']:.0%}/{srm['test_share']:.0%}"
    counts = (
        f"{srm['users_control']:,} control vs {srm['users_test']:,} test users where a {split} split "
        f"expects {srm['expected_control']:,.0f} vs {srm['expected_test']:,.0f} "
        f"(chi-square = {srm['chi2']:.2f}, p = {srm['p_value']:.3g}"
    )
    if srm["alert"]:
        return (
            f"Sample ratio mismatch: {counts} < {srm['alpha']:g}). The assignment or the logging is broken, "
            "so no comparison between the groups can be trusted; the tests below are for diagnosis."
        )
    return f"Sample ratio OK: {counts} >= {srm['alpha']:g})."


def _primary_sentence(welch_result: dict, alpha: float, verdict: str) -> str:
    if welch_result["undefined_reason"]:
        return f"{PRIMARY_TEST} cannot be computed: {welch_result['undefined_reason']}; no difference can be claimed."
    significant = welch_result["p_value"] < alpha
    lift = welch_result["relative_lift"]
    conclusion = CONCLUSIONS[verdict]
    return (
        f"{PRIMARY_TEST} (primary): test - control = {welch_result['diff']:+.4g} "
        f"({welch_result['mean_test']:.4g} vs {welch_result['mean_control']:.4g}"
        f"{f', relative lift {lift:+.2%}' if lift is not None else ''}), "
        f"{welch_result['confidence_level']:.0%} CI [{welch_result['ci_low']:+.4g}, {welch_result['ci_high']:+.4g}], "
        f"p = {welch_result['p_value']:.3g} {'<' if significant else '>='} alpha = {alpha:g}: {conclusion}."
    )


def _mann_whitney_sentence(mw: dict, primary_outcome: str, alpha: float) -> str:
    if mw["undefined_reason"]:
        return f"Mann-Whitney U not computed: {mw['undefined_reason']}."
    agreement = _agreement(primary_outcome, _outcome(mw["p_value"], mw["rank_biserial"], alpha))
    return (
        f"Mann-Whitney U on attributed likes (secondary): U = {mw['statistic']:,.0f}, p = {mw['p_value']:.3g}, "
        f"rank-biserial r = {mw['rank_biserial']:+.4f} (a test user beats a control user with probability "
        f"{mw['common_language']:.4f}, ties counting half); it {agreement}."
    )


def _hit_rate_sentence(hit: dict, alpha: float) -> str:
    if hit["undefined_reason"]:
        return f"Hit rate not tested: {hit['undefined_reason']}."
    return (
        f"Hit rate (secondary): {hit['mean_control']:.2%} control vs {hit['mean_test']:.2%} test, difference "
        f"{hit['diff'] * 100:+.2f} pp, {hit['confidence_level']:.0%} CI [{hit['ci_low'] * 100:+.2f}, "
        f"{hit['ci_high'] * 100:+.2f}] pp, Welch p = {hit['p_value']:.3g} "
        f"({'significant' if hit['p_value'] < alpha else 'not significant'} at {alpha:g})."
    )


def _bootstrap_sentence(boot: dict, primary_outcome: str) -> str:
    if boot["undefined_reason"]:
        return f"Bootstrap CI of the difference in mean attributed likes: {boot['undefined_reason']}."
    agreement = _agreement(primary_outcome, _ci_outcome(boot))
    return (
        f"Bootstrap {boot['confidence_level']:.0%} CI of the difference in mean attributed likes "
        f"({boot['resamples']:,} resamples): [{boot['ci_low']:+.4g}, {boot['ci_high']:+.4g}]; it {agreement}."
    )


def results_rows(analysis: dict) -> pd.DataFrame:
    """One row per metric x test (and the SRM check), typed for Parquet and DuckDB."""
    srm = analysis["srm"]
    rows = [{
        "metric": "users", "test": "srm_chi_square", "primary": False, "statistic": srm["chi2"],
        "p_value": srm["p_value"], "significant": srm["alert"], "n_control": srm["users_control"],
        "n_test": srm["users_test"], "note": f"expected test share {srm['test_share']:g}, alpha {srm['alpha']:g}",
    }]  # fmt: skip
    for metric, tests in analysis["metrics"].items():
        for result in tests.values():
            rows.append(_result_row(metric, result, analysis["alpha"]))
    frame = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    frame["verdict"] = analysis["verdict"]
    return frame.astype(ROW_COLUMNS)


def _result_row(metric: str, result: dict, alpha: float) -> dict:
    effect_name = {"welch_t": "cohens_d", "mann_whitney_u": "rank_biserial"}.get(result["test"])
    if result["test"] == "bootstrap":
        significant = _ci_outcome(result) != "0"
    else:
        significant = result["p_value"] is not None and result["p_value"] < alpha
    return {
        "metric": metric,
        "test": result["test"],
        "primary": metric == "attributed_likes" and result["test"] == "welch_t",
        "statistic": result.get("statistic"),
        "p_value": result.get("p_value"),
        "significant": significant,
        "diff": result.get("diff"),
        "ci_low": result.get("ci_low"),
        "ci_high": result.get("ci_high"),
        "confidence_level": result.get("confidence_level"),
        "effect_size": result.get(effect_name) if effect_name else None,
        "effect_size_name": effect_name,
        "relative_lift": result.get("relative_lift"),
        "df": result.get("df"),
        "n_control": result["n_control"],
        "n_test": result["n_test"],
        "note": result["undefined_reason"],
    }


def power_two_sample(
    mean_diff: float, sd_control: float, sd_test: float, n_control: int, n_test: int, alpha: float
) -> float:
    """Power of the two-sided Welch test to detect ``mean_diff``, by the normal approximation."""
    standard_error = math.sqrt(sd_control**2 / n_control + sd_test**2 / n_test)
    z_critical = stats.norm.ppf(1.0 - alpha / 2.0)
    shift = abs(mean_diff) / standard_error
    return float(stats.norm.cdf(shift - z_critical) + stats.norm.cdf(-shift - z_critical))


def _mean(values) -> float | None:
    return _float(np.mean(values)) if len(values) else None


def _sd(values) -> float | None:
    return _float(np.std(values, ddof=1)) if len(values) >= 2 else None


def _float(value) -> float | None:
    """A plain float for JSON; None for missing or not-a-number."""
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)
