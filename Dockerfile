# Spoofwatch: two stages, so the runtime image carries no compilers or build caches.
FROM python:3.11-slim AS build
WORKDIR /src
# The locked dependencies first (their layer is reused until the lock changes), wheels only and
# each checked against its sha256 in the lock; then Spoofwatch's own wheel, without dependencies.
COPY requirements.lock ./
RUN python -m venv /opt/spoofwatch \
 && /opt/spoofwatch/bin/pip install --no-cache-dir --require-hashes --only-binary :all: \
      -r requirements.lock
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN /opt/spoofwatch/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/spoofwatch/bin/pip install --no-cache-dir --no-deps /wheels/spoofwatch-*.whl

FROM python:3.11-slim
# ffmpeg probes and transcodes media, libopus decodes voice messages in the bot's decoder
# processes (ffmpeg depends on it anyway); nothing else is needed at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg libopus0 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 spoofwatch \
 && useradd --system --create-home --uid 10001 --gid 10001 spoofwatch \
 && mkdir -p /data && chown spoofwatch /data
COPY --from=build /opt/spoofwatch /opt/spoofwatch
ENV PATH=/opt/spoofwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SPOOFWATCH_DB=/data/spoofwatch.db
# Numeric, so an orchestrator can tell it is not root without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/spoofwatch
VOLUME ["/data"]
# SIGTERM from `docker stop` lets running scans record their state before exit.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
