"""The A/B report: attribute likes to the API's exposures, run the statistics, write the decision.

``write_report(settings)`` (``recsys ab-report``, the ``recsys_ab_report`` DAG) writes one folder
per run, renamed into place only when complete::

    RECSYS_DATA_DIR/reports/ab/<UTC time>/
        report.md            the decision and its reasons, the numbers, the plots
        likes_per_user.png   how attributed likes per user are distributed, by group
        difference_ci.png    test - control with its CIs (Welch and bootstrap), likes per user and hit rate
        daily.png            per day and group: attributed likes per user and hit rate
        results.parquet      one row per metric x test (``abstats.results_rows``) with the run's id
        per_user.parquet     the attribution per user
        analysis.json        everything above, machine-readable

Exposures come from ``RECSYS_DATA_DIR/exposures`` (optionally limited to a time range) and likes from
the source's ``feed_data``, so likes logged after the last nightly extract count too.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from recsys import abstats, attribution, catalog
from recsys.extract import check_schema
from recsys.files import write_json
from recsys.sources import open_source

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

log = logging.getLogger(__name__)

GROUP_COLORS = {"control": "#4C72B0", "test": "#DD8452"}


class ABReportError(RuntimeError):
    """There is nothing to analyse (no exposures in the range)."""


def reports_dir(settings) -> Path:
    return settings.data_dir / "reports" / "ab"


def gather(settings, since: dt.datetime | None = None, until: dt.datetime | None = None):
    """The attribution over the exposures with since <= time < until, and what served them."""
    con = catalog.connect(settings)
    con.execute("CREATE TEMP TABLE analysed AS SELECT * FROM exposures "
                "WHERE ($since::TIMESTAMP IS NULL OR time >= $since::TIMESTAMP) "
                "AND ($until::TIMESTAMP IS NULL OR time < $until::TIMESTAMP)",
                {"since": since, "until": until})  # fmt: skip
    exposures = con.sql("SELECT * FROM analysed").to_arrow_table()
    served_by = con.sql("SELECT exp_group, snapshot, model_version, served_by AS method, count(*) AS exposures "
                        "FROM analysed GROUP BY ALL ORDER BY ALL").to_arrow_table().to_pylist()  # fmt: skip
    con.close()
    if exposures.num_rows == 0:
        window = f" between {since or 'the start'} and {until or 'now'}" if since or until else ""
        raise ABReportError(f"no exposures{window} under {settings.exposures_dir}: the API logs one per response "
                            "(serve it, e.g. with `recsys simulate`)")  # fmt: skip
    window = dt.timedelta(minutes=settings.ab_window_minutes)
    first, last = exposures.column("time").to_pandas().agg(["min", "max"])
    source = open_source(settings.source_url)
    likes = source.likes_between(check_schema(source), first.to_pydatetime(), (last + window).to_pydatetime())
    log.info("A/B attribution: %s exposures, %s likes in the period", f"{exposures.num_rows:,}", f"{likes.num_rows:,}")
    return attribution.attribute(exposures, likes, window), served_by


def write_report(settings, since: dt.datetime | None = None, until: dt.datetime | None = None) -> Path:
    """Analyse the experiment and write a report folder; returns its path."""
    result, served_by = gather(settings, since, until)
    analysis = abstats.analyse(result.per_user, settings.ab_test_share, settings.ab_alpha, settings.ab_srm_alpha,
                               seed=settings.seed)  # fmt: skip
    run_id = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
    staging = reports_dir(settings) / f".staging-{run_id}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        period = [str(moment) for moment in result.period]
        summary = {
            "run": run_id, "period": period, "window_minutes": settings.ab_window_minutes,
            "salt": settings.ab_salt, "users_in_both_groups": len(result.both_groups),
            "served_by": served_by, **analysis,
        }  # fmt: skip
        write_json(staging / "analysis.json", summary)
        results = abstats.results_rows(analysis)
        results.insert(0, "run", run_id)
        results.to_parquet(staging / "results.parquet", index=False)
        result.per_user.assign(run=run_id).to_parquet(staging / "per_user.parquet", index=False)
        plot_likes_per_user(result.per_user, staging / "likes_per_user.png")
        plot_differences(analysis, staging / "difference_ci.png")
        plot_daily(result.daily, staging / "daily.png")
        (staging / "report.md").write_text(markdown(summary, result.both_groups))
        final = reports_dir(settings) / run_id
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("A/B report %s: %s (%s)", final, analysis["verdict"], analysis["reasons"][0])
    return final


def _number(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(summary: dict, both_groups: pd.DataFrame) -> str:
    groups, srm = summary["groups"], summary["srm"]
    likes, hits = summary["metrics"]["attributed_likes"], summary["metrics"]["hit_rate"]
    welch, mw, boot = likes["welch"], likes["mann_whitney"], likes["bootstrap"]
    level = f"{100 * (1 - summary['alpha']):g}%"
    lines = [
        f"# A/B report {summary['run']}",
        "",
        f"**Decision: {summary['verdict']}** (primary test: {summary['primary_test']}, alpha {summary['alpha']:g})",
        "",
        *[f"- {reason}" for reason in summary["reasons"]],
        "",
        "## Experiment",
        "",
        f"- exposures from {summary['period'][0]} to {summary['period'][1]} (the last one plus the "
        f"{summary['window_minutes']}-minute attribution window); salt `{summary['salt']}`",
        f"- a like counts for an exposure when its post was recommended in it and it came within "
        f"{summary['window_minutes']} minutes after it; each like counts once",
        f"- users served by both groups (left out): {summary['users_in_both_groups']}"
        + (f" (e.g. {', '.join(map(str, both_groups['user_id'].head(5)))})" if len(both_groups) else ""),
        "- served by: " + "; ".join(f"{row['exp_group']}: snapshot {row['snapshot']}, models {row['model_version']}"
                                    + (f", ranked by {row['method']}" if row["method"] else "")
                                    + f" ({row['exposures']:,} exposures)" for row in summary["served_by"]),
        "",
        "| group | users | exposures per user | attributed likes per user | hit rate |",
        "|---|---:|---:|---:|---:|",
        *[f"| {name} | {g['users']:,} | {_number(g.get('mean_exposures'), 2)} | "
          f"{_number(g['mean_attributed_likes'])} | {_number(g['hit_rate'])} |" for name, g in groups.items()],
        "",
        "## Tests",
        "",
        f"| check | statistic | p-value | test - control | {level} CI | effect size |",
        "|---|---:|---:|---:|---|---:|",
        f"| sample ratio (chi-square, expected test share {srm['test_share']:g}) | {_number(srm['chi2'], 3)} | "
        f"{_number(srm['p_value'])} | | | |",
        f"| **likes per user: Welch's t (primary)** | {_number(welch['statistic'], 3)} | "
        f"{_number(welch['p_value'])} | {_number(welch['diff'])} | "
        f"{_number(welch['ci_low'])} .. {_number(welch['ci_high'])} | d = {_number(welch['cohens_d'], 3)} |",
        f"| likes per user: Mann-Whitney U | {_number(mw['statistic'], 1)} | {_number(mw['p_value'])} | | | "
        f"rank-biserial = {_number(mw.get('rank_biserial'), 3)} |",
        f"| likes per user: bootstrap | | | {_number(boot.get('diff'))} | "
        f"{_number(boot.get('ci_low'))} .. {_number(boot.get('ci_high'))} | |",
        f"| hit rate: Welch's t | {_number(hits['welch']['statistic'], 3)} | {_number(hits['welch']['p_value'])} | "
        f"{_number(hits['welch']['diff'])} | {_number(hits['welch']['ci_low'])} .. "
        f"{_number(hits['welch']['ci_high'])} | d = {_number(hits['welch']['cohens_d'], 3)} |",
        "",
        "## Plots",
        "",
        "![attributed likes per user](likes_per_user.png)",
        "",
        "![test - control with confidence intervals](difference_ci.png)",
        "",
        "![daily metrics per group](daily.png)",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def plot_likes_per_user(per_user: pd.DataFrame, path: Path) -> None:
    """Share of each group's users with 0, 1, 2, ... attributed likes (the tail pooled)."""
    cap = max(1, int(np.percentile(per_user["attributed_likes"], 99))) if len(per_user) else 1
    bins = np.arange(cap + 1)
    fig, ax = plt.subplots(figsize=(8, 4))
    for offset, (group, rows) in zip((-0.2, 0.2), per_user.groupby("exp_group"), strict=False):
        counts = np.bincount(np.minimum(rows["attributed_likes"].to_numpy(int), cap), minlength=cap + 1)
        ax.bar(bins + offset, counts / counts.sum(), width=0.4, label=f"{group} ({len(rows):,} users)",
               color=GROUP_COLORS.get(group))  # fmt: skip
    labels = [*map(str, bins[:-1]), f"{cap}+"]
    step = max(1, len(bins) // 16)  # about 16 labels, the pooled tail always among them
    shown = [*bins[:-1:step], bins[-1]]
    ax.set_xticks(shown, [labels[i] for i in shown])
    ax.set_xlabel("attributed likes per user")
    ax.set_ylabel("share of users")
    ax.set_title("Attributed likes per user")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_differences(analysis: dict, path: Path) -> None:
    """test - control with the Welch and bootstrap CIs, relative to the control mean."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (metric, label) in zip(axes, (("attributed_likes", "likes per user"), ("hit_rate", "hit rate")),
                                   strict=True):  # fmt: skip
        tests = analysis["metrics"][metric]
        for y, name in enumerate(("welch", "bootstrap")):
            result = tests[name]
            if result.get("ci_low") is None:
                continue
            below, above = result["diff"] - result["ci_low"], result["ci_high"] - result["diff"]
            ax.errorbar(result["diff"], y, xerr=[[below], [above]], fmt="o", capsize=6, color="#333333")
        ax.axvline(0, color="#C44E52", linestyle="--", linewidth=1)
        ax.set_yticks([0, 1], ["Welch", "bootstrap"])
        ax.set_ylim(-0.7, 1.7)
        ax.set_title(f"{label}: test - control, {100 * (1 - analysis['alpha']):g}% CI")
    fig.suptitle(f"Decision: {analysis['verdict']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_daily(daily: pd.DataFrame, path: Path) -> None:
    """Per day with exposures (days as categories: a gap in the data is no gap on the axis)."""
    days = sorted(daily["day"].astype(str).str[:10].unique())
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for group, rows in daily.groupby("exp_group"):
        color = GROUP_COLORS.get(group)
        x = [days.index(day) for day in rows["day"].astype(str).str[:10]]
        axes[0].plot(x, rows["attributed_likes"] / rows["users"], marker="o", label=group, color=color)
        axes[1].plot(x, rows["hits"] / rows["users"], marker="o", label=group, color=color)
    for ax in axes:
        ax.set_xticks(range(len(days)), days)
    for ax, title in zip(axes, ("attributed likes per exposed user", "hit rate (users with a like)"), strict=True):
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=30)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
