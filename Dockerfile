# certwatch: multi-stage build with uv and the lock file; a slim, non-root runtime.
#
#   docker build -t certwatch .
#   docker run -d --name certwatch -p 8765:8765 -v certwatch-data:/data \
#     -e API_TOKEN=changeme -e CERTSTREAM_URL=ws://certstream:8080/full-stream certwatch

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first: this layer is reused until the lock file changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project
COPY README.md ./
COPY certwatch ./certwatch
RUN uv sync --locked --no-dev --no-editable

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 certwatch \
    && useradd --system --uid 10001 --gid certwatch --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin certwatch \
    && mkdir /data \
    && chown certwatch:certwatch /data
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DB_PATH=/data/certwatch.db \
    API_HOST=0.0.0.0 \
    API_PORT=8765
VOLUME ["/data"]
EXPOSE 8765
USER 10001:10001
WORKDIR /data
# No curl or wget in a slim image: Python asks /healthz itself.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('API_PORT', '8765'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]
# Exec form: certwatch is PID 1 and receives SIGTERM itself (it exits 0 within seconds).
ENTRYPOINT ["certwatch"]
