# Spoofwatch: two stages, so the runtime image carries no compilers or build caches.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN python -m venv /opt/spoofwatch \
 && /opt/spoofwatch/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/spoofwatch/bin/pip install --no-cache-dir .

FROM python:3.11-slim
# ffmpeg probes and transcodes media, libopus decodes voice messages in the bot's decoder
# processes (ffmpeg depends on it anyway); nothing else is needed at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg libopus0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --uid 10001 spoofwatch \
 && mkdir -p /data && chown spoofwatch /data
COPY --from=build /opt/spoofwatch /opt/spoofwatch
ENV PATH=/opt/spoofwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SPOOFWATCH_DB=/data/spoofwatch.db
USER spoofwatch
WORKDIR /home/spoofwatch
VOLUME ["/data"]
# SIGTERM from `docker stop` lets running scans record their state before exit.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
