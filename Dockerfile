# Spoofwatch: two stages, so the runtime image carries no compilers or build caches.
# tests/test_image.py checks this recipe without a Docker engine (see the README's Docker part).
FROM python:3.11-slim AS build
WORKDIR /src
# The locked dependencies first (their layer is reused until a lock changes), wheels only and
# each checked against its sha256 in the lock; the build backend likewise, in a venv of its
# own that stays in this stage. Then Spoofwatch's own wheel, built with that backend, without
# dependencies and without reaching PyPI.
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /opt/spoofwatch \
 && /opt/spoofwatch/bin/pip install --no-cache-dir --require-hashes --only-binary :all: \
      -r requirements.lock \
 && python -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir --require-hashes --only-binary :all: \
      -r requirements-build.lock
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/spoofwatch/bin/pip install --no-cache-dir --no-deps --no-index /wheels/spoofwatch-*.whl

FROM python:3.11-slim
# No system packages: media is probed and decoded with PyAV, whose wheel (in the venv) carries
# FFmpeg's libraries.
RUN groupadd --system --gid 10001 spoofwatch \
 && useradd --system --create-home --uid 10001 --gid 10001 spoofwatch \
 && mkdir -p /data && chown spoofwatch /data
COPY --from=build /opt/spoofwatch /opt/spoofwatch
# Metrics and /healthz on loopback inside the container, for the HEALTHCHECK below; set
# SPOOFWATCH_METRICS_HOST=0.0.0.0 (and publish the port) for a Prometheus outside it.
ENV PATH=/opt/spoofwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SPOOFWATCH_DB=/data/spoofwatch.db \
    SPOOFWATCH_METRICS_PORT=9464
# Numeric, so an orchestrator can tell it is not root without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/spoofwatch
VOLUME ["/data"]
# Standard library only (the image has no curl): exit 0 while /healthz answers 200.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "bot.healthcheck"]
# SIGTERM from `docker stop` lets running scans record their state before exit.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
