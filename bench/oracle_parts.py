"""Benchmark: how much of the oracle's expected HitRate@5 is reachable, part by part.

The generator's like model is logit = bias(u) + quality(i) + taste(u, sub-theme(i)) + hour, where
taste = demographic part (age, gender, country) + city part + personal part (``recsys.generate``).
This ranks the served candidates of one evaluated version (as ``recsys evaluate`` does) by the
truth with some parts left out, next to the trained models and to the single feature
``group_taste_logit``: what a model could reach if it learned a part exactly, and what it reaches.

Then which estimate holds ``group_taste_logit`` back: it is a sum of three terms (the post's
like-rate, the cohort's lift on the post's text cluster, the city's lifts on its topic and
cluster), and each is swapped in turn for its exact counterpart from the truth (post quality plus
everyone's average taste; the demographic or the city part of taste, minus its population mean).

    python bench/oracle_parts.py --data /tmp/bench-seeds3/seed-1 --preset demo --seed 1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recsys import evaluate, generate, models, training  # noqa: E402
from recsys.config import load_settings  # noqa: E402
from recsys.truth import GroundTruth  # noqa: E402

CITY = ("topic_city", "subtheme_city")
PERSONAL = ("topic_personal", "subtheme_personal")
PARTS = {
    "truth without the personal part": PERSONAL,
    "truth without the city part": CITY,
    "truth without city and personal parts": CITY + PERSONAL,
    "truth without post quality": ("post_quality",),
}


class FeatureRanker:
    """Ranks by one feature column of the test text space."""

    text_space = "test"

    def __init__(self, column: str):
        self.column = column

    def score(self, features, examples):
        return features[self.column].fillna(-1e9).to_numpy()


class SwappedSumRanker:
    """group_taste_logit's terms, the ones named in exact taken from the truth instead."""

    text_space = "test"
    TERMS = ("post", "cohort", "city")

    def __init__(self, truth: GroundTruth, demographic: GroundTruth, demographic_and_city: GroundTruth, exact):
        self.truth, self.exact = truth, set(exact)
        city = demographic_and_city.taste - demographic.taste
        # Centred on everyone: the post's own like-rate already holds the average viewer's taste.
        self.taste_parts = {"cohort": demographic.taste - demographic.taste.mean(0),
                            "city": city - city.mean(0)}  # fmt: skip
        self.average_taste = truth.taste.mean(0)

    def score(self, features, examples):
        users = self.truth.user_index(examples["user_id"].to_numpy())
        posts = self.truth.post_index(examples["post_id"].to_numpy())
        subtheme = self.truth.post_subtheme[posts]
        post_rate = features["post_like_rate"].to_numpy()
        estimated = {
            "post": np.log(post_rate / (1 - post_rate)),
            "cohort": np.log(features["cohort_cluster_lift"].to_numpy()),
            "city": np.log(features["city_topic_lift"].to_numpy()) + np.log(features["city_cluster_lift"].to_numpy()),
        }
        exact = {"post": self.truth.post_quality[posts] + self.average_taste[subtheme],
                 **{term: part[users, subtheme] for term, part in self.taste_parts.items()}}  # fmt: skip
        total = sum(exact[term] if term in self.exact else estimated[term] for term in self.TERMS)
        return np.nan_to_num(total, nan=-1e9)


def truth_without(truth: GroundTruth, preset: str, seed: int, parts: tuple[str, ...]) -> GroundTruth:
    """The generator's truth regenerated with some standard deviations set to 0. Draws are the same
    (a normal with sd 0 still takes its draws), so the other parts are exactly those of the data."""
    spec = dataclasses.replace(generate.LatentSpec(), **{name: 0.0 for name in parts})
    partial = generate.build(generate.PRESETS[preset], seed, spec).truth
    return dataclasses.replace(truth, user_bias=partial.user_bias, post_quality=partial.post_quality,
                               taste=partial.taste)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a RECSYS_DATA_DIR with a trained version")
    parser.add_argument("--preset", required=True)
    parser.add_argument("--seed", type=int, required=True, help="the generator seed of that data")
    args = parser.parse_args()
    os.environ["RECSYS_DATA_DIR"] = str(args.data)
    os.environ["RECSYS_SOURCE_URL"] = f"duckdb:///{args.data / 'source.duckdb'}"
    settings = load_settings()
    version = training.latest_version_dir(settings)
    store, split = training.load_version(version, settings)
    truth = GroundTruth.load(settings.ground_truth_dir)
    rankers = evaluate.standard_rankers({kind: models.load(version / f"{kind}.cbm") for kind in ("control", "test")},
                                        truth, settings.seed)  # fmt: skip
    rankers["feature group_taste_logit (test space)"] = FeatureRanker("group_taste_logit")
    for name, parts in PARTS.items():
        rankers[name] = evaluate.OracleRanker(truth_without(truth, args.preset, args.seed, parts))
    demographic = truth_without(truth, args.preset, args.seed, CITY + PERSONAL)
    demographic_and_city = truth_without(truth, args.preset, args.seed, PERSONAL)
    for exact in (("post",), ("cohort",), ("city",), ("cohort", "city"), SwappedSumRanker.TERMS):
        rankers[f"group_taste_logit, exact {' + '.join(exact)} term"] = SwappedSumRanker(
            truth, demographic, demographic_and_city, exact
        )
    served = evaluate.evaluate_served(evaluate.Scorers(store, rankers), *split.test, settings.eval_users,
                                      settings.seed, truth)  # fmt: skip
    print(f"{platform.machine()}, {os.cpu_count()} cores; {args.preset} seed {args.seed}, version {version.name}, "
          f"{served['users']:,} users served at {served['checking_time']}\n")  # fmt: skip
    print("| ranking by | expected HitRate@5 | share of the oracle's |\n|---|---:|---:|")
    for name, result in served["methods"].items():
        print(f"| {name} | {result['expected_hit_rate']['mean']:.4f} | {result['share_of_oracle']:.4f} |")


if __name__ == "__main__":
    main()
