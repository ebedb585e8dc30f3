"""Benchmark: what each exposure power of the served ranking wins in the logs and costs in preference.

On one seed's run of ``bench/evaluate_seeds.py`` (its newest models version), each served model ranks
the test users' candidates by probability x (views of the post on the last day + 1) ** power
(``models.ranking_scores``) for each power, evaluated like every other method: served HitRate@5
against later likes, and the expected HitRate@5 of what is served as a share of the oracle's. The
best baselines and the oracle sit beside them. Prints Markdown for docs/benchmarks.md.

    python bench/exposure_powers.py --run /tmp/bench-seeds/seed-1 --powers 0 0.1 0.25 0.5 1
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a seed folder of bench/evaluate_seeds.py")
    parser.add_argument("--powers", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.5, 1.0])
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    os.environ["RECSYS_DATA_DIR"] = str(args.run)
    os.environ["RECSYS_SOURCE_URL"] = f"duckdb:///{args.run / 'source.duckdb'}"

    from recsys import evaluate, models, rankers, training
    from recsys.config import load_settings

    settings = load_settings()
    version_dir = sorted((args.run / "models").iterdir())[-1]
    store, split = training.load_version(version_dir, settings)
    truth = training.ground_truth(settings, store)
    if truth is None:
        raise SystemExit(f"{args.run} has no ground truth: the share of the oracle needs generated data")
    methods = {name: evaluate.BaselineRanker(name) for name in rankers.BASELINES}
    methods["oracle"] = evaluate.OracleRanker(truth)
    tuned = {}
    for kind in ("control", "test"):
        model = models.load(version_dir / f"{kind}.cbm")
        tuned[kind] = models.exposure_power(model)
        methods.update({f"{kind} ^{power}": ranker
                        for power, ranker in evaluate.power_rankers(model, kind, args.powers).items()})  # fmt: skip
    served = evaluate.evaluate_served(evaluate.Scorers(store, methods), *split.test, settings.eval_users, settings.seed,
                                      truth)["methods"]  # fmt: skip
    baselines = sorted(rankers.BASELINES, key=lambda name: -served[name]["served_hit_rate"]["mean"])[:2]
    print(f"\n{version_dir}: test days {split.test[0]}..{split.test[1]}; power chosen on the validation days: "
          + ", ".join(f"{kind} {power}" for kind, power in tuned.items()) + "\n")  # fmt: skip
    print("| method | served HitRate@5 | expected / oracle's |\n|---|---:|---:|")
    for name in [*baselines, *(m for m in methods if m.startswith(("control ", "test "))), "oracle"]:
        print(f"| {name} | {served[name]['served_hit_rate']['mean']:.4f} | {served[name]['share_of_oracle']:.3f} |")


if __name__ == "__main__":
    main()
