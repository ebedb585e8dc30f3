"""DuckDB views over the current artifacts, for analysts and ``recsys query``.

- ``recommendations``: the current snapshot's ranked posts (user_id, bucket, rank, post_id, score, exp_group)
- ``users``: the snapshot's users with their A/B group and shard
- ``posts``: post_id, text, topic
- ``evaluations``: one row per model version and method (every evaluation run kept)
- ``exposures``: every API response (request_id, user_id, exp_group, model_version, served_by, time, post_ids,
  ...); served_by is NULL in rows logged before it was
- ``ab_results``: one row per A/B report run, metric and test (p-value, difference, CI, verdict)

Plain DuckDB works the same way on the files (paths in docs/architecture.md).
"""

from __future__ import annotations

import pyarrow as pa

from recsys import snapshot
from recsys.exposures import SCHEMA as EXPOSURE_SCHEMA
from recsys.sources import quiet_duckdb

VIEWS = ("recommendations", "users", "posts", "evaluations", "exposures", "ab_results")


def connect(settings):
    """An in-memory DuckDB connection with the views; a view with no files yet is empty, not an error."""
    con = quiet_duckdb()
    current = snapshot.current_id(settings)
    if current is not None:
        folder = settings.snapshots_dir / current
        con.execute(f"CREATE VIEW users AS SELECT * FROM read_parquet('{folder / 'users.parquet'}')")
        con.execute(f"CREATE VIEW posts AS SELECT * FROM read_parquet('{folder / 'posts.parquet'}')")
        con.execute(f"""
            CREATE VIEW recommendations AS
            SELECT r.*, u."group" AS exp_group
            FROM read_parquet('{folder / "recommendations" / "*.parquet"}') r JOIN users u USING (user_id)""")
    else:
        con.execute('CREATE VIEW users AS SELECT NULL::BIGINT AS user_id, NULL::VARCHAR AS "group" WHERE false')
        con.execute("CREATE VIEW posts AS SELECT NULL::BIGINT AS post_id, NULL::VARCHAR AS text, "
                    "NULL::VARCHAR AS topic WHERE false")  # fmt: skip
        con.execute("CREATE VIEW recommendations AS SELECT NULL::BIGINT AS user_id, NULL::TINYINT AS bucket, "
                    "NULL::SMALLINT AS rank, NULL::BIGINT AS post_id, NULL::FLOAT AS score, "
                    "NULL::VARCHAR AS exp_group WHERE false")  # fmt: skip
    if any(settings.evaluations_dir.glob("*/evaluation.parquet")):
        files = settings.evaluations_dir / "*" / "evaluation.parquet"
        con.execute(f"CREATE VIEW evaluations AS SELECT * FROM read_parquet('{files}')")
    else:
        con.execute("CREATE VIEW evaluations AS SELECT NULL::VARCHAR AS version, NULL::VARCHAR AS method WHERE false")
    if any(settings.exposures_dir.glob("day=*/*.parquet")):
        logged = f"read_parquet('{settings.exposures_dir}/*/*.parquet', hive_partitioning = true, union_by_name = true)"
        columns = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {logged}").fetchall()}
        # Files logged before served_by existed lack it (their rows read NULL), and so may every file.
        served_by = "" if "served_by" in columns else ", NULL::VARCHAR AS served_by"
        con.execute(f"CREATE VIEW exposures AS SELECT *{served_by} FROM {logged}")
    else:
        con.register("empty_exposures", pa.table({f.name: pa.array([], f.type) for f in EXPOSURE_SCHEMA}))
        con.execute("CREATE VIEW exposures AS SELECT *, NULL::DATE AS day FROM empty_exposures")
    ab_results = settings.data_dir / "reports" / "ab"
    if any(ab_results.glob("*/results.parquet")):
        con.execute(f"CREATE VIEW ab_results AS SELECT * FROM read_parquet('{ab_results}/*/results.parquet')")
    else:
        con.execute("CREATE VIEW ab_results AS SELECT NULL::VARCHAR AS run, NULL::VARCHAR AS metric, "
                    "NULL::VARCHAR AS test, NULL::DOUBLE AS p_value, NULL::VARCHAR AS verdict WHERE false")  # fmt: skip
    return con
