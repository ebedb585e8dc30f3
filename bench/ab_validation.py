"""Validation by simulation of the A/B statistics and decision (recsys/abstats.py).

Per-user data is drawn from one model: exposures 1 + negative binomial (mean 20, shape 2), a like rate
per user from Beta(2, 18) (mean 0.1), attributed likes Binomial(exposures, rate), hit = at least one.
Groups come from the production hash (recsys.ab.assign_groups) with a new salt per run. Every run is
decided by recsys.abstats.analyse, the code the report calls.

1. A/A: both groups from the same model; the false-positive rate of the decision, with its 95% CI.
2. SRM: users assigned at a 52/48 split but analysed against 50/50; the share flagged, against the
   noncentral chi-square prediction; and the SRM false-alarm rate of the A/A runs.
3. Power: the like rate of `test` multiplied by 1 + lift; the share of runs that ship test, against
   abstats.power_two_sample fed with the model's exact means and SDs.

The main runs skip the bootstrap (it costs ~1 s per run and never enters the verdict); the first
--bootstrap-runs runs of the A/A and of each power scenario are analysed again with it, to show the
verdict is the same and how often the bootstrap CI agrees with Welch's.

    .venv/bin/python bench/ab_validation.py --runs 500 --users 20000 --seed 1 --out /tmp/ab-validation.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recsys import abstats  # noqa: E402
from recsys.ab import assign_groups  # noqa: E402

ALPHA, SRM_ALPHA, TEST_SHARE = 0.05, 0.001, 0.5
SRM_PLANTED_SHARE = 0.52
FPR_BOUNDS = (0.02, 0.08)
EXTRA_EXPOSURES_MEAN, EXPOSURES_SHAPE = 19.0, 2.0  # exposures = 1 + NB: every analysed user was served
RATE_A, RATE_B = 2.0, 18.0
POWER_SCENARIOS = ((0.05, 10_000), (0.05, 20_000), (0.10, 10_000))  # (relative lift, users)
MOMENT_CHECK_USERS = 1_000_000


def simulate(rng: np.random.Generator, groups: np.ndarray, lift: float) -> pd.DataFrame:
    """One row per user; the like rate of `test` users is multiplied by 1 + lift."""
    exposures = 1 + rng.negative_binomial(EXPOSURES_SHAPE, EXPOSURES_SHAPE / (EXPOSURES_SHAPE + EXTRA_EXPOSURES_MEAN),
                                          size=len(groups))  # fmt: skip
    rates = rng.beta(RATE_A, RATE_B, size=len(groups)) * np.where(groups == "test", 1.0 + lift, 1.0)
    likes = rng.binomial(exposures, np.minimum(rates, 1.0))
    return pd.DataFrame({"exp_group": groups, "exposures": exposures, "attributed_likes": likes, "hit": likes > 0})


def model_moments(lift: float) -> tuple[float, float]:
    """Exact mean and SD of attributed likes per user for a like rate scaled by 1 + lift.

    Var(L) = E[e p (1 - p)] + Var(e p), with e and p independent.
    """
    mean_e = 1.0 + EXTRA_EXPOSURES_MEAN
    mean_e2 = EXTRA_EXPOSURES_MEAN + EXTRA_EXPOSURES_MEAN**2 / EXPOSURES_SHAPE + mean_e**2
    mean_p = (1.0 + lift) * RATE_A / (RATE_A + RATE_B)
    mean_p2 = (1.0 + lift) ** 2 * RATE_A * (RATE_A + 1) / ((RATE_A + RATE_B) * (RATE_A + RATE_B + 1))
    mean = mean_e * mean_p
    variance = mean_e * (mean_p - mean_p2) + mean_e2 * mean_p2 - mean**2
    return mean, math.sqrt(variance)


def run_once(users: int, lift: float, assigned_share: float, salt: str, rng_seed: list[int], resamples: int) -> dict:
    rng = np.random.default_rng(rng_seed)
    groups = assign_groups(np.arange(1, users + 1), salt, assigned_share)
    return abstats.analyse(simulate(rng, groups, lift), TEST_SHARE, ALPHA, SRM_ALPHA, resamples, seed=rng_seed[-1])


def scenario(name: str, index: int, runs: int, users: int, lift: float, assigned_share: float, seed: int,
             bootstrap_runs: int) -> dict:  # fmt: skip
    """`runs` analyses without bootstrap; the first `bootstrap_runs` again with it."""
    started = time.perf_counter()
    analyses, bootstrap_checks = [], []
    for run in range(runs):
        salt, rng_seed = f"{name}-{seed}-{run}", [seed, index, run]
        analyses.append(run_once(users, lift, assigned_share, salt, rng_seed, resamples=0))
        if run < bootstrap_runs:
            with_bootstrap = run_once(users, lift, assigned_share, salt, rng_seed, abstats.DEFAULT_BOOTSTRAP_RESAMPLES)
            bootstrap_checks.append((analyses[-1], with_bootstrap))
    return {"name": name, "runs": runs, "users": users, "lift": lift, "assigned_share": assigned_share,
            "analyses": analyses, "bootstrap_checks": bootstrap_checks,
            "seconds": time.perf_counter() - started}  # fmt: skip


def rate(successes: int, trials: int) -> dict:
    ci = stats.binomtest(successes, trials).proportion_ci(confidence_level=0.95)
    return {"count": successes, "runs": trials, "rate": successes / trials, "ci_low": ci.low, "ci_high": ci.high}


def verdict_counts(analyses: list[dict]) -> dict:
    return {verdict: sum(a["verdict"] == verdict for a in analyses) for verdict in abstats.VERDICTS}


def bootstrap_summary(checks: list[tuple[dict, dict]]) -> dict:
    """Same verdict with and without bootstrap; bootstrap CI excludes 0 exactly when Welch's does."""
    same_verdict = sum(without["verdict"] == with_["verdict"] for without, with_ in checks)
    same_call = sum(_excludes_zero(with_, "welch") == _excludes_zero(with_, "bootstrap") for _, with_ in checks)
    return {"runs": len(checks), "resamples": abstats.DEFAULT_BOOTSTRAP_RESAMPLES,
            "same_verdict": same_verdict, "bootstrap_agrees_with_welch": same_call}  # fmt: skip


def _excludes_zero(analysis: dict, test: str) -> bool:
    result = analysis["metrics"]["attributed_likes"][test]
    return result["ci_low"] > 0 or result["ci_high"] < 0


def summarise_aa(aa: dict) -> dict:
    analyses = aa["analyses"]
    welch_p = [a["metrics"]["attributed_likes"]["welch"]["p_value"] for a in analyses]
    mann_whitney_p = [a["metrics"]["attributed_likes"]["mann_whitney"]["p_value"] for a in analyses]
    false_positives = sum(a["verdict"] != abstats.NO_DIFFERENCE for a in analyses)
    fpr = rate(false_positives, len(analyses))
    return {
        "verdicts": verdict_counts(analyses),
        "false_positive_rate": fpr,
        "within_bounds": FPR_BOUNDS[0] <= fpr["rate"] <= FPR_BOUNDS[1],
        "mann_whitney_rejection_rate": rate(sum(p < ALPHA for p in mann_whitney_p), len(analyses)),
        "welch_p_uniform_ks_p": float(stats.kstest(welch_p, "uniform").pvalue),
        "srm_false_alarm_rate": rate(sum(a["srm"]["alert"] for a in analyses), len(analyses)),
        "bootstrap": bootstrap_summary(aa["bootstrap_checks"]),
    }


def summarise_srm(srm: dict) -> dict:
    # Noncentrality of the chi-square test: N * sum((observed share - expected share)^2 / expected share).
    shift = SRM_PLANTED_SHARE - TEST_SHARE
    noncentrality = srm["users"] * (shift**2 / TEST_SHARE + shift**2 / (1 - TEST_SHARE))
    critical = stats.chi2.ppf(1 - SRM_ALPHA, df=1)
    return {
        "flagged": rate(sum(a["verdict"] == abstats.INVALID for a in srm["analyses"]), srm["runs"]),
        "predicted": float(stats.ncx2.sf(critical, df=1, nc=noncentrality)),
        "mean_test_share": float(np.mean([a["srm"]["users_test"] / srm["users"] for a in srm["analyses"]])),
    }


def summarise_power(power: dict, check_rng: np.random.Generator) -> dict:
    mean_control, sd_control = model_moments(0.0)
    mean_test, sd_test = model_moments(power["lift"])
    n_control, n_test = power["users"] * (1 - TEST_SHARE), power["users"] * TEST_SHARE
    predicted = abstats.power_two_sample(mean_test - mean_control, sd_control, sd_test, n_control, n_test, ALPHA)
    large = simulate(check_rng, np.full(MOMENT_CHECK_USERS, "test", dtype=object), power["lift"])["attributed_likes"]
    return {
        "lift": power["lift"],
        "users": power["users"],
        "mean_control": mean_control,
        "mean_test": mean_test,
        "sd_control": sd_control,
        "sd_test": sd_test,
        "sd_test_simulated": float(large.std()),
        "mean_test_simulated": float(large.mean()),
        "skewness": float(stats.skew(large)),
        "predicted_power": predicted,
        "shipped": rate(sum(a["verdict"] == abstats.SHIP for a in power["analyses"]), power["runs"]),
        "verdicts": verdict_counts(power["analyses"]),
        "bootstrap": bootstrap_summary(power["bootstrap_checks"]),
    }


def markdown(report: dict) -> str:
    aa, srm = report["aa"], report["srm"]
    fpr = aa["false_positive_rate"]
    lines = [
        "| check | expected | observed (95% CI) | runs |",
        "|---|---|---|---|",
        f"| A/A false-positive rate of the decision | {ALPHA:.0%}, within [{FPR_BOUNDS[0]:.0%}, {FPR_BOUNDS[1]:.0%}] "
        f"| {_pct(fpr)} ({aa['verdicts'][abstats.SHIP]} ship, {aa['verdicts'][abstats.KEEP]} keep, "
        f"{aa['verdicts'][abstats.INVALID]} SRM) | {fpr['runs']} |",
        f"| A/A Mann-Whitney rejection rate (not deciding) | {ALPHA:.0%} | {_pct(aa['mann_whitney_rejection_rate'])} "
        f"| {fpr['runs']} |",
        f"| A/A Welch p-values uniform (KS test p) | > 0.05 | {aa['welch_p_uniform_ks_p']:.3f} | {fpr['runs']} |",
        f"| A/A SRM false alarms at {SRM_ALPHA:g} | {SRM_ALPHA:.1%} | {_pct(aa['srm_false_alarm_rate'])} "
        f"| {fpr['runs']} |",
        f"| planted 52/48 split flagged invalid (SRM) | {srm['predicted']:.1%} (noncentral chi-square) "
        f"| {_pct(srm['flagged'])} | {srm['flagged']['runs']} |",
    ]
    for power in report["power"]:
        lines.append(
            f"| +{power['lift']:.0%} like rate, {power['users']:,} users: ship test "
            f"| {power['predicted_power']:.1%} (power_two_sample) | {_pct(power['shipped'])} "
            f"| {power['shipped']['runs']} |"
        )
    checks = [aa["bootstrap"], *(power["bootstrap"] for power in report["power"])]
    lines.append(
        f"\nBootstrap ({checks[0]['resamples']:,} resamples) on {sum(c['runs'] for c in checks)} runs: same verdict "
        f"in {sum(c['same_verdict'] for c in checks)}, CI excludes 0 exactly when Welch's does in "
        f"{sum(c['bootstrap_agrees_with_welch'] for c in checks)}."
    )
    return "\n".join(lines)


def _pct(result: dict) -> str:
    return f"{result['rate']:.1%} ({result['ci_low']:.1%}-{result['ci_high']:.1%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500, help="A/A runs")
    parser.add_argument("--srm-runs", type=int, default=200)
    parser.add_argument("--power-runs", type=int, default=300, help="runs per power scenario")
    parser.add_argument("--users", type=int, default=20_000, help="users per A/A and SRM run")
    parser.add_argument("--bootstrap-runs", type=int, default=10, help="runs per scenario re-analysed with bootstrap")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/ab-validation.json"))
    args = parser.parse_args()

    started = time.perf_counter()
    aa = scenario("aa", 0, args.runs, args.users, 0.0, TEST_SHARE, args.seed, args.bootstrap_runs)
    srm = scenario("srm", 1, args.srm_runs, args.users, 0.0, SRM_PLANTED_SHARE, args.seed, bootstrap_runs=0)
    powers = [scenario(f"power{i}", 2 + i, args.power_runs, users, lift, TEST_SHARE, args.seed, args.bootstrap_runs)
              for i, (lift, users) in enumerate(POWER_SCENARIOS)]  # fmt: skip
    check_rng = np.random.default_rng([args.seed, 99])
    report = {
        "config": vars(args) | {"out": str(args.out), "alpha": ALPHA, "srm_alpha": SRM_ALPHA},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "aa": summarise_aa(aa),
        "srm": summarise_srm(srm),
        "power": [summarise_power(power, check_rng) for power in powers],
        "seconds": {s["name"]: round(s["seconds"], 1) for s in (aa, srm, *powers)},
    }
    report["seconds"]["total"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    print(f"\nseconds: {report['seconds']}; JSON: {args.out}")


if __name__ == "__main__":
    main()
