# syntax=docker/dockerfile:1
# agentwatch worker image: `docker build -t agentwatch .`
# Runs `agentwatch worker` as an unprivileged user; state (RocksDB) lives on the /data volume.
# /keys (owned by that user) is where docker-compose.yml's control-keys volume holds the
# control signing key pair (`agentwatch keys generate /keys`).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# a C compiler for the compiled detection modules (setup.py); the runtime image needs none
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
# the worker extra: faust, detectors, notifiers, OTLP receiver (the base install is the agent SDK)
RUN pip install '.[worker]'

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AGENTWATCH_DATA_DIR=/data
RUN groupadd --system --gid 10001 agentwatch \
    && useradd --system --uid 10001 --gid agentwatch --create-home \
       --home-dir /home/agentwatch --shell /usr/sbin/nologin agentwatch \
    && mkdir -p /data /keys \
    && chown agentwatch:agentwatch /data /keys
COPY --from=build /opt/venv /opt/venv
USER agentwatch:agentwatch
WORKDIR /home/agentwatch
VOLUME ["/data"]
# 6066: health, agent views, control API, /metrics; 4318: OTLP/HTTP traces
EXPOSE 6066 4318
# GET /healthz on the web port (AGENTWATCH_WEB_PORT, default 6066); non-2xx or no answer = unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AGENTWATCH_WEB_PORT', '6066'), timeout=3)"]
ENTRYPOINT ["agentwatch"]
CMD ["worker"]
