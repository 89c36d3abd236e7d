# syntax=docker/dockerfile:1
# certpost controller: the API with its embedded deployment worker.
#   docker build -t certpost .
#   docker run -p 8000:8000 -v certpost-data:/data certpost
# The first start on an empty database prints the first admin API token once (docker logs).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
RUN python -m venv /opt/certpost \
 && /opt/certpost/bin/pip install --upgrade pip \
 && /opt/certpost/bin/pip install .

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 certpost \
 && useradd --system --uid 10001 --gid certpost --home-dir /data --shell /usr/sbin/nologin certpost \
 && mkdir -p /data && chown certpost:certpost /data && chmod 700 /data
COPY --from=build /opt/certpost /opt/certpost
ENV PATH=/opt/certpost/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CERTPOST_DATA_DIR=/data
USER certpost
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
CMD ["certpost", "serve", "--host", "0.0.0.0"]
