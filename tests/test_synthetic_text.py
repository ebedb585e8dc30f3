import re
import time

import numpy as np
import pytest
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from recsys.synthetic_text import SUBTHEMES, compose_text

PAIRS = [(topic, sub) for topic, subs in SUBTHEMES.items() for sub in subs]
NEWS_TOPICS = ("business", "sport", "politics", "tech", "entertainment")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def compose_round_robin(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [compose_text(*PAIRS[i % len(PAIRS)], rng) for i in range(count)]


def sentences(text: str) -> list[str]:
    return SENTENCE_END.split(text.strip())


def test_same_seed_gives_same_texts_and_another_seed_other_texts():
    first = compose_round_robin(200, seed=5)
    assert first == compose_round_robin(200, seed=5)
    other = compose_round_robin(200, seed=6)
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 190


def test_topics_and_subthemes():
    assert set(SUBTHEMES) == {"movie", "covid", "business", "sport", "politics", "tech", "entertainment"}
    for topic, subs in SUBTHEMES.items():
        assert 5 <= len(subs) <= 6, topic
        assert len(set(subs)) == len(subs)
        assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", s) for s in subs), subs


def test_unknown_topic_or_subtheme_is_named_in_the_error():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="'cooking'"):
        compose_text("cooking", "baking", rng)
    with pytest.raises(ValueError, match="'tennis'"):
        compose_text("movie", "tennis", rng)


@pytest.mark.parametrize(
    ("topic", "low", "high", "max_paragraphs"),
    [("covid", 1, 3, 1), ("movie", 3, 8, 1)] + [(t, 4, 15, 4) for t in NEWS_TOPICS],
)
def test_lengths_by_topic(topic, low, high, max_paragraphs):
    rng = np.random.default_rng(1)
    counts, paragraph_counts = [], []
    for i in range(300):
        text = compose_text(topic, SUBTHEMES[topic][i % len(SUBTHEMES[topic])], rng)
        paragraphs = text.split("\n\n")
        counts.append(len(sentences(text)))
        paragraph_counts.append(len(paragraphs))
        assert all(len(sentences(p)) >= min(2, low) for p in paragraphs), text
    assert min(counts) == low and max(counts) == high
    assert max(paragraph_counts) == max_paragraphs
    if max_paragraphs > 1:
        assert min(paragraph_counts) == 1


def test_texts_are_clean_sentences():
    for text in compose_round_robin(1_000, seed=2):
        assert not re.search(r"[{}\[\]|]", text), text  # every slot and paraphrase filled
        assert "  " not in text
        for sentence in sentences(text):
            assert sentence[0].isupper() or sentence[0].isdigit(), sentence
            assert sentence[-1] in ".!?", sentence
        assert not re.search(r"\b[Aa] [aeiAEI]", text), text  # "an" before a vowel


def test_texts_are_distinct():
    texts = compose_round_robin(2_000, seed=3)
    assert len(set(texts)) >= 0.98 * len(texts)


def test_fast_enough_for_the_full_preset():
    start = time.perf_counter()
    compose_round_robin(7_000, seed=4)
    assert time.perf_counter() - start < 5.0


def knn_accuracy(features, labels) -> float:
    knn = KNeighborsClassifier(n_neighbors=5, metric="cosine")
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return cross_val_score(knn, features, labels, cv=folds).mean()


def test_tfidf_svd_finds_topics_and_partly_subthemes():
    rng = np.random.default_rng(7)
    per_subtheme = 17  # about 600 texts
    pairs = [pair for pair in PAIRS for _ in range(per_subtheme)]
    texts = [compose_text(topic, sub, rng) for topic, sub in pairs]
    topics = np.array([topic for topic, _ in pairs])
    subthemes = np.array([f"{topic}/{sub}" for topic, sub in pairs])
    features = TruncatedSVD(10, random_state=0).fit_transform(TfidfVectorizer().fit_transform(texts))

    assert knn_accuracy(features, topics) >= 0.9
    # Sub-themes are partly visible to words alone: well above chance (about 0.2 within a topic).
    within = np.mean([knn_accuracy(features[topics == t], subthemes[topics == t]) for t in SUBTHEMES])
    assert within >= 0.3
