"""The model steps end to end on the tiny preset: prepare, train three models, evaluate, gate, publish;
the gate's decision on hand-made served hits."""

import json

import numpy as np
import pandas as pd
import pytest

from recsys import evaluate, models, rankers, text_features, training
from recsys.models import MODEL_KINDS
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def trained(tiny_extract, tmp_path_factory):
    env, settings, version_dir, store, infos = train_tiny(tiny_extract, tmp_path_factory.mktemp("models-data"),
                                                          MODEL_KINDS)  # fmt: skip
    report = training.evaluate_version(version_dir, settings, store)
    with pytest.MonkeyPatch.context() as patch:  # the gate test reads settings from the environment
        for name, value in env.items():
            patch.setenv(name, value)
        yield settings, version_dir, infos, report


def training_settings():
    from recsys.config import load_settings

    return load_settings()


def test_versioned_artifacts_with_manifests(trained):
    settings, version_dir, infos, _ = trained
    manifest = training.read_manifest(version_dir)
    assert manifest["split"]["test"] == ["2021-10-10", "2021-10-14"]
    assert manifest["split_rule"].startswith("test days 2021-10-10..2021-10-14: the last 5 day(s), holding ")
    assert manifest["text_dimensions"] == {"control": 10, "test": 8}
    assert manifest["cluster_dimensions"] == {"control": 50, "test": 384}  # LSA components; the whole embedding
    for kind in MODEL_KINDS:
        assert (version_dir / f"{kind}.cbm").exists()
        info = json.loads((version_dir / f"{kind}.json").read_text())
        assert info == json.loads(json.dumps(infos[kind]))
        assert info["train_rows"] == manifest["train_views"] and info["valid_auc"] > 0.5
        assert 0.5 < info["valid_query_auc"] <= 1  # early stopping's measure: the order within user-days
        assert info["offset"] == (None if kind == "recipe" else "taste_model_logit")
        assert models.load(version_dir / f"{kind}.cbm").get_metadata().get("offset") == info["offset"]
        if kind != "recipe":  # the served models: an exposure power chosen on the validation days, kept in the file
            assert info["exposure_power"] in settings.exposure_powers
            assert set(info["exposure_tuning"]) == {str(power) for power in settings.exposure_powers}
            assert models.exposure_power(models.load(version_dir / f"{kind}.cbm")) == info["exposure_power"]
    assert "user_like_rate" in infos["control"]["features"] and "user_like_rate" not in infos["recipe"]["features"]
    assert [f for f in infos["control"]["features"] if not f.startswith("text_")] == [
        f for f in infos["test"]["features"] if not f.startswith("text_")
    ]  # identical but for the text features


def test_evaluation_report_table_and_chart(trained):
    settings, version_dir, _, report = trained
    assert set(report["methods"]) == {"random", *rankers.BASELINES, *MODEL_KINDS, "oracle"}
    for name in ("evaluation.json", "evaluation.png"):
        assert (settings.evaluations_dir / version_dir.name / name).stat().st_size > 1000
    oracle = report["methods"]["oracle"]
    assert oracle["share_of_oracle"] == 1.0
    assert oracle["replay_hit_rate"]["mean"] > report["methods"]["random"]["replay_hit_rate"]["mean"]


def test_a_failed_model_is_published_with_the_best_baseline_serving_it(trained, monkeypatch):
    """A floor no model reaches: the version is still published, each model's groups served by the
    best baseline of the evaluation, with the numbers and the reason in serving.json."""
    settings, version_dir, _, _ = trained
    monkeypatch.setenv("RECSYS_MIN_HITRATE", "0.99")
    assert training.gate_and_publish(version_dir, training_settings()) == version_dir.name
    assert training.current_version(settings) == version_dir.name
    decisions = training.read_serving(version_dir)
    hits = pd.read_parquet(version_dir / training.SERVED_HITS)
    means = hits[hits["method"].isin(list(rankers.BASELINES))].groupby("method")["hit"].mean()
    assert decisions["best_baseline"] == means.idxmax()
    for kind in training.SERVED_KINDS:
        decision = decisions["kinds"][kind]
        assert not decision["passed"] and decision["served_by"] == decision["fresh_served_by"] == means.idxmax()
        assert decision["hit_rate"] == pytest.approx(hits.loc[hits["method"] == kind, "hit"].mean(), abs=1e-4)
        assert "below RECSYS_MIN_HITRATE 0.99" in decision["reason"]
        assert decision["reason"].endswith(f"group served by {means.idxmax()}")


def served_hits(hits: dict[str, list[float]], fresh: list[bool]) -> pd.DataFrame:
    """The evaluation's served hits: one row per (method, user), users 0..n-1."""
    users = np.arange(len(fresh), dtype=np.int64)
    return pd.concat([pd.DataFrame({"method": method, "user_id": users, "fresh": fresh, "hit": np.asarray(h, float)})
                      for method, h in hits.items()], ignore_index=True)  # fmt: skip


def gate_settings(**changes):
    from dataclasses import replace

    from recsys.config import load_settings

    return replace(load_settings(), **{"min_hit_rate": None, "gate_bootstrap": 2000, "seed": 0, **changes})


def with_hits(count: int, users: int) -> np.ndarray:
    """0/1 per user, `count` hits spread over the users."""
    hits = np.zeros(users)
    hits[np.linspace(0, users - 1, count).astype(int)] = 1
    return hits


BOTH = {"control", "test"}


def test_a_model_worse_than_the_best_baseline_beyond_noise_is_served_by_it():
    n = 400
    trending = with_hits(200, n)
    hits = {"popular": with_hits(120, n), "trending_7d": trending, "control": trending,
            "test": with_hits(100, n)}  # fmt: skip
    decisions = training.decide_serving(served_hits(hits, [False] * n), BOTH, gate_settings())
    assert decisions["best_baseline"] == "trending_7d"
    test = decisions["kinds"]["test"]
    assert (test["passed"], test["served_by"], test["fresh_served_by"]) == (False, "trending_7d", "trending_7d")
    assert test["hit_rate"] == 0.25 and test["baseline_hit_rate"] == 0.5 and test["difference"] == -0.25
    assert test["ci95"][1] < 0 and test["users"] == n
    assert test["reason"] == (f"model test: served HitRate@5 0.250 vs trending_7d 0.500, difference -0.250 "
                              f"[95% CI {test['ci95'][0]:+.3f}, {test['ci95'][1]:+.3f}]: worse beyond noise, "
                              "group served by trending_7d")  # fmt: skip
    control = decisions["kinds"]["control"]  # equal to the baseline: nothing proves it worse
    assert control["passed"] and control["served_by"] == "control" and control["ci95"] == [0, 0]


def test_a_model_slightly_below_the_baseline_within_noise_keeps_serving():
    n = 400
    baseline = with_hits(200, n)
    model = baseline.copy()
    model[np.flatnonzero(baseline)[:6]] = 0  # 6 users lose their hit, 3 gain one: -0.0075 on average
    model[np.flatnonzero(baseline == 0)[:3]] = 1
    decisions = training.decide_serving(served_hits({"popular": baseline, "control": model, "test": model},
                                                    [False] * n), BOTH, gate_settings())  # fmt: skip
    decision = decisions["kinds"]["control"]
    assert decision["difference"] == -0.0075 and decision["ci95"][0] < 0 < decision["ci95"][1]
    assert decision["passed"] and decision["served_by"] == "control" and "within noise" in decision["reason"]


def test_a_floor_set_by_the_user_fails_a_model_the_baseline_cannot_beat():
    n = 200
    hits = {"popular": with_hits(40, n), "control": with_hits(100, n), "test": with_hits(100, n)}
    unset = training.decide_serving(served_hits(hits, [False] * n), BOTH, gate_settings())
    assert unset["kinds"]["control"]["passed"] and "better beyond noise" in unset["kinds"]["control"]["reason"]
    floored = training.decide_serving(served_hits(hits, [False] * n), BOTH, gate_settings(min_hit_rate=0.6))
    control = floored["kinds"]["control"]
    assert not control["passed"] and control["served_by"] == control["fresh_served_by"] == "popular"
    assert "better beyond noise, and its served HitRate@5 0.500 is below RECSYS_MIN_HITRATE 0.6" in control["reason"]


def test_fresh_users_are_decided_apart_when_there_are_enough_of_them():
    """Better than the best baseline overall (personal), worse on users without history than
    trending: known users get the model, fresh users trending."""
    known, new = 340, 60
    fresh = [False] * known + [True] * new
    hits = {
        "personal": np.r_[with_hits(204, known), np.zeros(new)],
        "trending_1d": np.r_[with_hits(100, known), with_hits(30, new)],
        "control": np.r_[with_hits(240, known), with_hits(3, new)],
        "test": np.r_[with_hits(240, known), with_hits(3, new)],
    }
    decisions = training.decide_serving(served_hits(hits, fresh), BOTH, gate_settings())
    assert decisions["best_baseline"] == "personal"
    control = decisions["kinds"]["control"]
    assert (control["passed"], control["served_by"], control["fresh_served_by"]) == (True, "control", "trending_1d")
    assert control["fresh"]["users"] == new and control["fresh"]["baseline"] == "trending_1d"
    assert control["fresh"]["reason"].startswith("model control on 60 fresh users: served HitRate@5 0.050 vs "
                                                 "trending_1d 0.500")  # fmt: skip
    assert control["fresh"]["reason"].endswith("worse beyond noise, fresh users served by trending_1d")

    few = fresh[: known + 20]  # fewer than 30 fresh users follow the decision over all users
    decisions = training.decide_serving(served_hits({m: h[: known + 20] for m, h in hits.items()}, few), BOTH,
                                        gate_settings())  # fmt: skip
    control = decisions["kinds"]["control"]
    assert control["fresh_served_by"] == "control" and control["fresh"] is None


def test_a_model_that_was_not_trained_is_served_by_the_best_baseline():
    n = 100
    hits = {"popular": with_hits(30, n), "trending_14d": with_hits(40, n), "control": with_hits(60, n),
            "test": with_hits(60, n)}  # fmt: skip
    decisions = training.decide_serving(served_hits(hits, [False] * n), {"control"}, gate_settings())
    test = decisions["kinds"]["test"]
    assert (test["passed"], test["served_by"], test["hit_rate"]) == (False, "trending_14d", None)
    assert test["reason"] == "model test was not trained or not evaluated: group served by trending_14d"
    assert decisions["kinds"]["control"]["passed"]


def test_paired_bootstrap_interval_is_reproducible_and_covers_the_mean():
    from recsys.abstats import paired_bootstrap_ci

    differences = np.r_[np.ones(30), -np.ones(10), np.zeros(60)]
    low, high = paired_bootstrap_ci(differences, 2000, seed=3)
    assert (low, high) == paired_bootstrap_ci(differences, 2000, seed=3)
    assert low < 0.2 < high and 0.05 < low and high < 0.35  # mean 0.2, standard error about 0.063
    assert paired_bootstrap_ci(np.zeros(5), 500, seed=0) == (0.0, 0.0)


def test_embeddings_are_cached_by_content(trained, monkeypatch):
    settings, version_dir, _, _ = trained
    texts = ["a post about tennis", "another post about space"]
    cache = settings.data_dir / "cache" / "embeddings"
    first = text_features.sentence_embeddings(texts, settings.embedding_model, cache)
    monkeypatch.setattr(text_features, "_load_model", lambda path: pytest.fail("a cached text was embedded again"))
    again = text_features.sentence_embeddings(list(reversed(texts)), settings.embedding_model, cache)
    assert np.allclose(again, first[::-1]) and first.shape == (2, 384)
    assert np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)


def control_on_test_views(trained, rows: int):
    """(feature store, the control model, the first `rows` views of the first test day) of the trained version."""
    settings, version_dir, _, _ = trained
    store, split = training.load_version(version_dir, settings)
    examples = store.con.execute(f"SELECT user_id, post_id, timestamp FROM views WHERE day = DATE '{split.test[0]}' "
                                 f"ORDER BY ALL LIMIT {rows}").df()  # fmt: skip
    return store, models.load(version_dir / "control.cbm"), examples


def test_a_served_ranking_weighs_the_probability_by_recent_exposure(trained):
    store, model, examples = control_on_test_views(trained, 400)
    frame = store.features(examples, "control")
    assert frame["post_views_1d"].nunique() > 1
    probability = models.predict(model, "control", frame)
    np.testing.assert_allclose(models.ranking_scores(model, "control", frame, power=0.0), probability)
    np.testing.assert_allclose(models.ranking_scores(model, "control", frame, power=0.5),
                               probability * np.sqrt(frame["post_views_1d"].to_numpy() + 1))  # fmt: skip


def test_a_sparse_last_week_is_evaluated_over_a_window_with_enough_evidence(tiny_extract, tmp_path, monkeypatch):
    """The test window grows past days too thin to judge by, and the manifest says which rule chose it."""
    import shutil

    import duckdb

    extract, _ = tiny_extract
    sparse = tmp_path / "extracts" / extract.name
    sparse.mkdir(parents=True)
    for name in ("user_data.parquet", "post_text_df.parquet"):
        shutil.copy(extract / name, sparse / name)
    with duckdb.connect() as con:  # the last three days keep the events of 3 users
        con.execute(f"""
            COPY (SELECT * FROM read_parquet('{extract}/feed_data/*/*.parquet', hive_partitioning = true)
                  WHERE day < DATE '2021-10-12' OR user_id IN (
                      SELECT DISTINCT user_id FROM read_parquet('{extract}/feed_data/*/*.parquet',
                                                                 hive_partitioning = true)
                      WHERE day >= DATE '2021-10-12' ORDER BY user_id LIMIT 3))
            TO '{sparse / "feed_data"}' (FORMAT parquet, PARTITION_BY (day))""")
    for name, value in {"RECSYS_DATA_DIR": str(tmp_path), "RECSYS_TEST_DAYS": "1", "RECSYS_TEST_USER_DAYS": "100",
                        "RECSYS_EMBEDDING_COMPONENTS": "8", "RECSYS_TRAIN_ROWS": "6000"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    manifest = training.read_manifest(training.prepare(training_settings(), sparse))
    first, last = manifest["split"]["test"]
    assert last == "2021-10-14" and first <= "2021-10-11"  # past the three thin days, into busy ones
    assert f"test days {first}..{last}" in manifest["split_rule"]
    assert "RECSYS_TEST_USER_DAYS=100 user-days" in manifest["split_rule"]


def test_rankers_of_one_model_at_several_powers_predict_once_per_frame(trained, monkeypatch):
    store, model, examples = control_on_test_views(trained, 300)
    frames = [store.features(examples, "control") for _ in range(2)]
    expected = {power: models.ranking_scores(model, "control", frames[0], power) for power in (0.0, 0.5, 1.0)}
    calls = []
    predict = models.predict
    monkeypatch.setattr(models, "predict", lambda *args: calls.append(1) or predict(*args))
    rankers_by_power = evaluate.power_rankers(model, "control", (0.0, 0.5, 1.0))
    for frame in frames:
        for power, ranker in rankers_by_power.items():
            np.testing.assert_allclose(ranker.score(frame, examples), expected[float(power)])
    assert len(calls) == 2  # once per frame, not once per power
