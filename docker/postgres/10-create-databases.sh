#!/bin/bash
# Runs once, on the first start of an empty data volume (docker-entrypoint-initdb.d): creates the two
# separate databases of the compose stack, each owned by its own login role.
#   recsys  - the source tables (feed_data, user_data, post_text_df) the nightly extract reads
#   airflow - Airflow's metadata (and the Celery result backend)
# Passwords come from the environment (.env via docker-compose.yml), never from this file.
set -euo pipefail
: "${RECSYS_DB_PASSWORD:?RECSYS_DB_PASSWORD is not set}"
: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is not set}"

# psql variables (:"name" quotes an identifier, :'name' a literal), so no value is pasted into SQL.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v recsys_password="$RECSYS_DB_PASSWORD" -v airflow_password="$AIRFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE recsys LOGIN PASSWORD :'recsys_password';
CREATE DATABASE recsys OWNER recsys;
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
SQL
