"""The evaluation API: known answers, and proof that it can fail a bad model."""

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsys.evaluate import (
    BaselineRanker,
    OracleRanker,
    RandomRanker,
    Scorers,
    evaluate_replay,
    evaluate_served,
    hit_rate_at_k,
    mean_ci,
    ndcg_at_k,
    random_hit_rate_at_k,
    replay_examples,
    served_checks,
)
from recsys.features import FeatureStore
from recsys.text_features import tfidf_components
from recsys.truth import GroundTruth

GROUPS = np.repeat([0, 1, 2], [3, 6, 8])
LABELS = np.array([0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])


def test_hit_rate_counts_a_group_when_a_positive_is_in_its_top_k():
    scores = np.arange(len(GROUPS), dtype=float)[::-1]  # earlier rows rank higher
    assert hit_rate_at_k(scores, LABELS, GROUPS, k=5).tolist() == [1, 0, 1]
    assert hit_rate_at_k(-scores, LABELS, GROUPS, k=5).tolist() == [1, 1, 0]
    assert hit_rate_at_k(scores, LABELS, GROUPS, k=1).tolist() == [0, 0, 1]


def test_random_hit_rate_is_exact():
    exact = random_hit_rate_at_k(LABELS, GROUPS, k=5)
    assert exact == pytest.approx([1.0, 5 / 6, 1 - 6 / 56])  # n <= k; C(5,5)/C(6,5); C(6,5)/C(8,5)
    rng = np.random.default_rng(0)
    simulated = np.mean([hit_rate_at_k(rng.random(len(GROUPS)), LABELS, GROUPS) for _ in range(4000)], axis=0)
    assert simulated == pytest.approx(exact, abs=0.02)


def test_ndcg():
    scores = np.arange(len(GROUPS), dtype=float)[::-1]
    # group 0: the positive at rank 3 -> 1/log2(4) = 0.5; group 1: positive outside the top 5 -> 0
    assert ndcg_at_k(scores, LABELS, GROUPS).tolist() == pytest.approx([0.5, 0.0, 1.0])
    assert ndcg_at_k(LABELS, LABELS, GROUPS).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_mean_ci():
    summary = mean_ci([0, 1] * 50)
    assert summary["mean"] == 0.5 and summary["n"] == 100
    assert summary["ci95"] == pytest.approx([0.5 - 1.96 * 0.5025 / 10, 0.5 + 1.96 * 0.5025 / 10], abs=1e-3)


@pytest.fixture(scope="module")
def scored(tiny_extract):
    extract, truth_dir = tiny_extract
    posts = pq.read_table(extract / "post_text_df.parquet")
    store = FeatureStore(extract, posts.column("post_id").to_numpy(),
                         {"control": tfidf_components(posts.column("text").to_pylist())})  # fmt: skip
    truth = GroundTruth.load(truth_dir)
    rankers = {"random": RandomRanker(0), "another_random": RandomRanker(99), "popular": BaselineRanker("popular"),
               "trending_7d": BaselineRanker("trending_7d"), "oracle": OracleRanker(truth)}  # fmt: skip
    return store, Scorers(store, rankers), truth


def test_a_random_ranking_scores_random_and_the_oracle_scores_highest(scored):
    store, scorers, _ = scored
    examples = replay_examples(store, dt.date(2021, 10, 8), dt.date(2021, 10, 14), max_rows=10**6, seed=0)
    report = evaluate_replay(scorers, examples)
    expected = report["random_expected_replay_hit_rate"]["mean"]
    for name in ("random", "another_random"):
        low, high = report["methods"][name]["replay_hit_rate"]["ci95"]
        assert low <= expected <= high
        assert report["methods"][name]["auc"] == pytest.approx(0.5, abs=0.05)
    best = max(report["methods"], key=lambda m: report["methods"][m]["replay_hit_rate"]["mean"])
    assert best == "oracle"
    oracle = report["methods"]["oracle"]["replay_hit_rate"]
    assert oracle["ci95"][0] > report["methods"]["random"]["replay_hit_rate"]["ci95"][1]


def test_served_evaluation_scores_what_would_be_served(scored):
    store, scorers, truth = scored
    served = evaluate_served(scorers, dt.date(2021, 10, 10), dt.date(2021, 10, 14), users=100, seed=0, truth=truth)
    methods = served["methods"]
    assert 50 <= served["users"] <= 150
    assert methods["oracle"]["share_of_oracle"] == 1.0
    assert methods["oracle"]["expected_hit_rate"]["mean"] > methods["random"]["expected_hit_rate"]["mean"] + 0.1
    assert all(0 <= m["served_hit_rate"]["mean"] <= 1 for m in methods.values())
    per_user = served["per_user"]
    assert set(per_user["method"]) == set(methods)
    assert per_user.groupby("method")["user_id"].apply(lambda ids: sorted(ids)).map(tuple).nunique() == 1  # paired
    hit_rates = per_user.groupby("method")["hit"].mean()
    assert hit_rates.to_dict() == pytest.approx({m: v["served_hit_rate"]["mean"] for m, v in methods.items()},
                                                abs=1e-4)  # fmt: skip


def test_users_are_served_at_their_first_test_moment_and_fresh_ones_are_told_apart(scored):
    store, _, _ = scored
    checks = served_checks(store.con, dt.date(2021, 10, 10), dt.date(2021, 10, 14), users=10**6, seed=0)
    first = store.con.execute("""
        SELECT user_id, min(timestamp) AS moment, min(day) AS first_day FROM views
        WHERE day BETWEEN DATE '2021-10-10' AND DATE '2021-10-14' GROUP BY user_id""").df().set_index("user_id")
    before = set(store.con.execute("SELECT DISTINCT user_id FROM views WHERE day < DATE '2021-10-10'").fetchnumpy()[
        "user_id"])  # fmt: skip
    assert len(checks) == len(first)
    checks = checks.set_index("user_id")
    assert (checks["moment"] == first.loc[checks.index, "moment"]).all()
    for user_id, row in checks.iterrows():
        seen_earlier = store.con.execute(f"SELECT count(*) FROM views WHERE user_id = {user_id} "
                                         f"AND day < DATE '{row['day']}'").fetchone()[0]  # fmt: skip
        assert row["fresh"] == (seen_earlier == 0)
    assert checks["fresh"].any() or before >= set(checks.index)


def test_scoring_candidates_gives_the_scores_of_the_same_pairs(scored):
    store, scorers, _ = scored
    as_of = dt.date(2021, 10, 10)
    noon = pd.Timestamp(as_of) + pd.Timedelta(hours=12)
    user_ids = store.con.execute("SELECT DISTINCT user_id FROM views ORDER BY user_id LIMIT 6").fetchnumpy()["user_id"]
    liked = store.con.execute(
        f"SELECT DISTINCT user_id, post_id FROM views WHERE target = 1 AND day < DATE '{as_of}'"
    ).df()
    assert liked["user_id"].isin(user_ids).any()
    candidates = store.post_ids[::2]
    users = pd.DataFrame({"user_id": user_ids, "moment": noon})
    pairs, scores = scorers.score_candidates(users, candidates, as_of, noon, liked)

    excluded = liked[liked["user_id"].isin(user_ids) & liked["post_id"].isin(candidates)]
    assert len(pairs) == len(user_ids) * len(candidates) - len(excluded)
    assert set(pairs["post_id"]) <= set(candidates)
    served = set(zip(pairs["user_id"], pairs["post_id"], strict=True))
    assert not served & set(zip(liked["user_id"], liked["post_id"], strict=True))
    expected = scorers.score(pairs, as_of_day=as_of)
    for name, values in scores.items():
        np.testing.assert_allclose(values, expected[name], rtol=1e-6, err_msg=name)
