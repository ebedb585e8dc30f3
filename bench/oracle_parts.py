"""Benchmark: how much of the oracle's expected HitRate@5 is reachable, part by part.

The generator's like model is logit = bias(u) + quality(i) + taste(u, sub-theme(i)) + hour, where
taste = demographic part (age, gender, country) + city part + personal part (``recsys.generate``).
This ranks the served candidates of one evaluated version (as ``recsys evaluate`` does) by the
truth with some parts left out, next to the trained models and to the single feature
``group_taste_logit``: what a model could reach if it learned a part exactly, and what it reaches.

    python bench/oracle_parts.py --data /tmp/bench-seeds3/seed-1 --preset demo --seed 1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
from pathlib import Path

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
    served = evaluate.evaluate_served(evaluate.Scorers(store, rankers), *split.test, settings.eval_users,
                                      settings.seed, truth)  # fmt: skip
    print(f"{platform.machine()}, {os.cpu_count()} cores; {args.preset} seed {args.seed}, version {version.name}, "
          f"{served['users']:,} users served at {served['checking_time']}\n")  # fmt: skip
    print("| ranking by | expected HitRate@5 | share of the oracle's |\n|---|---:|---:|")
    for name, result in served["methods"].items():
        print(f"| {name} | {result['expected_hit_rate']['mean']:.4f} | {result['share_of_oracle']:.4f} |")


if __name__ == "__main__":
    main()
