"""The model steps end to end on the tiny preset: prepare, train three models, evaluate, gate, publish."""

import json

import numpy as np
import pytest

from recsys import models, text_features, training
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
    assert "user_like_rate" in infos["control"]["features"] and "user_like_rate" not in infos["recipe"]["features"]
    assert [f for f in infos["control"]["features"] if not f.startswith("text_")] == [
        f for f in infos["test"]["features"] if not f.startswith("text_")
    ]  # identical but for the text features


def test_evaluation_report_table_and_chart(trained):
    settings, version_dir, _, report = trained
    assert set(report["methods"]) == {"random", "popular", *MODEL_KINDS, "oracle"}
    for name in ("evaluation.json", "evaluation.png"):
        assert (settings.evaluations_dir / version_dir.name / name).stat().st_size > 1000
    oracle = report["methods"]["oracle"]
    assert oracle["share_of_oracle"] == 1.0
    assert oracle["replay_hit_rate"]["mean"] > report["methods"]["random"]["replay_hit_rate"]["mean"]


def test_quality_gate_refuses_then_publishes(trained, monkeypatch):
    settings, version_dir, _, report = trained
    monkeypatch.setenv("RECSYS_MIN_HITRATE", "0.99")
    strict = training_settings()
    control = report["methods"]["control"]["replay_hit_rate"]["mean"]
    with pytest.raises(training.QualityGateError) as refused:
        training.gate_and_publish(version_dir, strict)
    message = str(refused.value)
    assert f"model control: replay HitRate@5 {control:.4f} is below RECSYS_MIN_HITRATE 0.99" in message
    assert "still serving nothing" in message and training.current_version(strict) is None

    monkeypatch.setenv("RECSYS_MIN_HITRATE", "0")
    report["methods"]["popular"]["replay_hit_rate"]["mean"] = -1.0  # so only the threshold decides
    (version_dir / "evaluation.json").write_text(json.dumps(report))
    assert training.gate_and_publish(version_dir, training_settings()) == version_dir.name
    assert training.current_version(settings) == version_dir.name


def test_embeddings_are_cached_by_content(trained, monkeypatch):
    settings, version_dir, _, _ = trained
    texts = ["a post about tennis", "another post about space"]
    cache = settings.data_dir / "cache" / "embeddings"
    first = text_features.sentence_embeddings(texts, settings.embedding_model, cache)
    monkeypatch.setattr(text_features, "_load_model", lambda path: pytest.fail("a cached text was embedded again"))
    again = text_features.sentence_embeddings(list(reversed(texts)), settings.embedding_model, cache)
    assert np.allclose(again, first[::-1]) and first.shape == (2, 384)
    assert np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
