# One image for every role: HEALTHFLOW_ROLE picks gateway, patients, analytics, worker (or all).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app healthflow
COPY --from=build /install /usr/local
WORKDIR /app
USER healthflow
ENV HEALTHFLOW_HOST=0.0.0.0 \
    HEALTHFLOW_PORT=8000 \
    HEALTHFLOW_DATA_DIR=/app/data \
    HEALTHFLOW_LOG_FORMAT=json
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"HEALTHFLOW_PORT\"]}/health')"
CMD ["healthflow", "serve"]
