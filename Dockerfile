# One image for every Airflow service (api-server, scheduler, dag-processor, triggerer, Celery
# workers) and the recsys lookup API: the DAGs call the installed recsys package, so the library,
# the DAGs and the plugin ship together at one version. No secret is baked in: docker-compose.yml
# passes them from .env at run time (and .dockerignore keeps .env out of the build context).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/recsys/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/recsys/plugins \
    RECSYS_DATA_DIR=/data

# curl for the healthchecks, libgomp1 for the OpenMP of the model libraries.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# torch first, from the CPU wheel index: the torch that requirements.txt would pull from PyPI is a
# multi-GB CUDA build. requirements.txt pins torch==2.13.0, which the 2.13.0+cpu wheel satisfies.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# The pinned requirements, plus the Celery executor (profile celery) in the same resolve so pip
# check stays clean (kombu[redis] pins packaging and celery pins python-dateutil).
COPY requirements.txt /opt/recsys/requirements.txt
RUN pip install -r /opt/recsys/requirements.txt apache-airflow-providers-celery==3.26.0 redis==8.1.0 \
    && pip check

# The project itself (recsys and api), its DAGs and plugins.
COPY . /opt/recsys
WORKDIR /opt/recsys
RUN mkdir -p dags plugins \
    && pip install --no-deps . \
    && rm -rf build *.egg-info

# A non-root user; the directories that become named volumes belong to it, so new volumes do too.
RUN useradd --uid 50000 --gid 0 --create-home --home-dir /home/recsys recsys \
    && mkdir -p /data /opt/airflow/logs \
    && chown -R 50000:0 /data /opt/airflow
USER 50000
WORKDIR /opt/airflow

EXPOSE 8000 8080
CMD ["recsys", "serve", "--host", "0.0.0.0", "--port", "8000"]
