"""The ``recsys`` command line: one sub-command per product step."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys

from tqdm import tqdm

from recsys.config import ConfigError, load_settings


def _rows_bar(description: str):
    """A tqdm bar fed with (done, total) calls; returns (callback, bar)."""
    bar = tqdm(desc=description, unit=" rows", unit_scale=True, dynamic_ncols=True, file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = max(total, done)
        bar.update(done - bar.n)

    return update, bar


def cmd_generate(args, settings) -> int:
    from recsys.generate import PRESETS, SourceNotEmptyError, generate_into
    from recsys.sources import open_source

    source = open_source(settings.source_url)
    if args.keep_existing and "feed_data" in source.columns() and source.row_count("feed_data"):
        logging.info("%s already holds data; keeping it (--keep-existing)", source.url.display)
        return 0
    update, bar = _rows_bar(f"generate {args.preset}")
    try:
        summary = generate_into(
            source, PRESETS[args.preset], args.seed, args.replace, settings.ground_truth_dir, progress=update,
            world=args.world,
        )
    except SourceNotEmptyError as error:
        bar.close()
        logging.error("%s", error)
        return 2
    bar.close()
    print(json.dumps(summary))
    return 0


def _extract(args, settings):
    from recsys.extract import extract

    update, bar = _rows_bar("extract feed_data")
    try:
        return extract(settings, date=args.date, progress=update)
    finally:
        bar.close()


def cmd_extract(args, settings) -> int:
    print(_extract(args, settings))
    return 0


def _precompute(settings) -> str:
    from recsys import precompute

    bar = tqdm(desc="precompute", unit=" users", unit_scale=True, dynamic_ncols=True, file=sys.stderr)
    try:
        return precompute.run(settings, progress=bar.update)
    finally:
        bar.close()


def cmd_pipeline(args, settings) -> int:
    """Every nightly step, in order, in this process (the DAG runs the same functions)."""
    from recsys import precompute, snapshot, training
    from recsys.extract import verify_extract

    extract_path = _extract(args, settings)
    verify_extract(extract_path, settings)
    version = training.run(settings, extract_path)
    print(f"published models {version}; evaluation: {settings.evaluations_dir / version / 'evaluation.png'}")
    decisions = training.read_serving(settings.models_dir / version)["kinds"]
    for group, kind in precompute.group_models_of(settings).items():
        decision = decisions[kind]
        print(f"group {group} served by {decision['served_by']} (fresh users: {decision['fresh_served_by']}): "
              f"{decision['reason']}")  # fmt: skip
        if decision["fresh"] is not None:
            print(f"  {decision['fresh']['reason']}")
    published = _precompute(settings)
    print(f"published snapshot {published}")
    if settings.api_url:
        snapshot.wait_until_served(settings.api_url, published, snapshot.served_timeout(settings))
        print(f"the API at {settings.api_url} serves it")
    return 0


def cmd_precompute(args, settings) -> int:
    """Rank every user's posts with the published models and publish a new snapshot."""
    print(f"published snapshot {_precompute(settings)}")
    return 0


def cmd_snapshots(args, settings) -> int:
    from recsys import snapshot

    current = snapshot.current_id(settings)
    for name in snapshot.published(settings):
        print(f"{'*' if name == current else ' '} {name}")
    return 0


def cmd_rollback(args, settings) -> int:
    from recsys import snapshot

    print(f"serving snapshot {snapshot.rollback(settings, args.to)}")
    return 0


def cmd_serve(args, settings) -> int:
    import uvicorn

    from api.app import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=settings.log_level.lower(),
                access_log=False)  # fmt: skip
    return 0


def cmd_query(args, settings) -> int:
    """Run SQL over the current artifacts and print the result."""
    import duckdb

    from recsys import catalog

    con = catalog.connect(settings)
    try:
        result = con.sql(args.sql)
    except duckdb.Error as error:
        logging.error("query failed: %s (views: %s)", str(error).strip(), ", ".join(catalog.VIEWS))
        return 2
    if result is not None:
        result.show(max_rows=args.max_rows, max_width=200)
    return 0


def cmd_evaluate(args, settings) -> int:
    """Evaluate a trained version again (default: the newest) and print its table."""
    from recsys import training
    from recsys.evaluate import format_report

    version_dir = settings.models_dir / args.version if args.version else training.latest_version_dir(settings)
    report = training.evaluate_version(version_dir, settings)
    print(format_report(report))
    print(f"report: {settings.evaluations_dir / version_dir.name}")
    return 0


def cmd_simulate(args, settings) -> int:
    """Play feed traffic against the running API and append its views and likes to the source."""
    from recsys import simulate

    api_url = args.api or settings.api_url
    if not api_url:
        logging.error("no API to simulate against: pass --api URL or set RECSYS_API_URL")
        return 2
    bars = []  # made at the first answer, so that a refused run prints no empty bar

    def update(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(desc="simulate", total=total, unit=" requests", unit_scale=True, dynamic_ncols=True,
                             file=sys.stderr))  # fmt: skip
        bars[0].update(done - bars[0].n)

    try:
        result = simulate.simulate(settings, api_url, args.users, args.days, aa=args.aa, seed=args.seed,
                                   start=args.start, concurrency=args.concurrency,
                                   traffic=simulate.Traffic(limit=args.limit), progress=update)  # fmt: skip
    except simulate.AARefused as error:
        logging.error("%s", error)
        return 2
    except simulate.SimulationError as error:
        logging.error("%s", error)
        return 1
    finally:
        for bar in bars:
            bar.close()
    print(json.dumps(result.summary))
    return 0


def cmd_ab_report(args, settings) -> int:
    """Attribute likes to exposures, test, decide; write the report under RECSYS_DATA_DIR/reports/ab/."""
    from recsys.abreport import ABReportError, write_report
    from recsys.files import read_json

    try:
        folder = write_report(settings, args.since, args.until)
    except ABReportError as error:
        logging.error("%s", error)
        return 1
    analysis = read_json(folder / "analysis.json")
    print(f"decision: {analysis['verdict']}")
    for reason in analysis["reasons"]:
        print(f"  - {reason}")
    print(f"report: {folder / 'report.md'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="fill RECSYS_SOURCE_URL with generated data")
    generate.add_argument("--preset", choices=("tiny", "demo", "full"), default="demo")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--world", choices=("static", "dynamic"), default="static",
                          help="static: every post from day 0, fixed taste, a random feed (default); dynamic: posts "
                               "published over time and fading, news cycles, users joining, a feed biased to "
                               "recent and popular posts")  # fmt: skip
    generate.add_argument("--replace", action="store_true", help="overwrite tables that already hold data")
    generate.add_argument("--keep-existing", action="store_true", help="do nothing if the source holds data")
    generate.set_defaults(run=cmd_generate)

    evaluate = commands.add_parser("evaluate", help="evaluate trained models against the baselines")
    evaluate.add_argument("--version", help="a folder name under RECSYS_DATA_DIR/models (default: the newest)")
    evaluate.set_defaults(run=cmd_evaluate)

    commands.add_parser("precompute", help="rank every user's posts and publish a new snapshot").set_defaults(
        run=cmd_precompute
    )
    commands.add_parser("snapshots", help="list the published snapshots (* is served)").set_defaults(run=cmd_snapshots)
    rollback = commands.add_parser("rollback", help="serve an older published snapshot")
    rollback.add_argument("--to", help="a snapshot id (default: the one before the current)")
    rollback.set_defaults(run=cmd_rollback)

    serve = commands.add_parser("serve", help="run the lookup API")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1")
    serve.set_defaults(run=cmd_serve)

    from recsys.catalog import VIEWS

    query = commands.add_parser("query", help=f"SQL over the current artifacts (views: {', '.join(VIEWS)})")
    query.add_argument("sql")
    query.add_argument("--max-rows", type=int, default=40)
    query.set_defaults(run=cmd_query)

    sim = commands.add_parser("simulate", help="play feed traffic against the API, append its views and likes")
    sim.add_argument("--api", help="the API's base URL (default: RECSYS_API_URL)")
    sim.add_argument("--users", type=int, default=1_000, help="users to simulate (default: 1000)")
    sim.add_argument("--days", type=int, default=1, help="days to simulate (default: 1)")
    sim.add_argument("--aa", action="store_true", help="an A/A run: refuse unless both groups get the same model")
    sim.add_argument("--seed", type=int, default=None, help="default: RECSYS_SEED")
    sim.add_argument("--start", type=dt.date.fromisoformat, default=None,
                     help="first simulated day, YYYY-MM-DD (default: the day after the last feed day)")  # fmt: skip
    sim.add_argument("--concurrency", type=int, default=4, help="requests in flight (default: 4)")
    sim.add_argument("--limit", type=int, default=5, help="posts per request (default: 5)")
    sim.set_defaults(run=cmd_simulate)

    ab_report = commands.add_parser("ab-report", help="analyse the A/B experiment and write a report")
    ab_report.add_argument("--since", type=dt.datetime.fromisoformat, default=None,
                           help="only exposures at or after this time (ISO, UTC)")  # fmt: skip
    ab_report.add_argument("--until", type=dt.datetime.fromisoformat, default=None,
                           help="only exposures before this time (ISO, UTC)")  # fmt: skip
    ab_report.set_defaults(run=cmd_ab_report)

    for name, run, text in (
        ("extract", cmd_extract, "copy the source tables into a dated, validated Parquet snapshot"),
        ("pipeline", cmd_pipeline, "run every nightly step in this process"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--date", type=dt.date.fromisoformat, default=None,
                             help="the snapshot's date, YYYY-MM-DD (default: today, UTC)")  # fmt: skip
        command.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"recsys: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from recsys.extract import DataValidationError
    from recsys.snapshot import SnapshotError
    from recsys.sources import SourceError

    try:
        return args.run(args, settings)
    except (DataValidationError, SourceError, SnapshotError, FileNotFoundError) as error:
        logging.error("%s", error)
        return 1
