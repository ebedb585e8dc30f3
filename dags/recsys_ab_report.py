"""The A/B report: attribute likes to the API's exposures and decide between the two models.

Runs whenever the nightly DAG publishes a snapshot (the ``recsys_snapshot`` asset), so the report
follows each day's data. One task calls ``recsys.abreport.write_report``, the same function as
``recsys ab-report``; the report lands in ``RECSYS_DATA_DIR/reports/ab/<run>/`` and on the
Recsys page of this UI.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from recsys.config import load_settings


@dag(
    schedule=[Asset.ref(name="recsys_snapshot")],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["recsys"],
    doc_md=__doc__,
    default_args={"owner": "recsys", "retries": 2, "retry_delay": dt.timedelta(minutes=2)},
)
def recsys_ab_report():
    @task
    def ab_report() -> str:
        """Attribution, statistics, decision: report.md, plots and results.parquet; skipped while
        the API has logged no exposures yet."""
        from recsys.abreport import ABReportError, write_report

        try:
            return str(write_report(load_settings()))
        except ABReportError as error:
            raise AirflowSkipException(str(error)) from None

    ab_report()


recsys_ab_report()
