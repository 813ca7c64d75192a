# syntax=docker/dockerfile:1
# Serving image: ONNX Runtime + gRPC, no torch, no compilers. Build: docker build -t translator .

# --- build stage: turn the source tree into a wheel -------------------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY nmt/ nmt/
COPY service/ service/
COPY translation/ translation/
COPY training/ training/
COPY export/ export/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- final stage: the serving dependencies only -------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRANSLATOR_BUNDLES=/models/demo-de-en \
    TRANSLATOR_PORT=50051 \
    TRANSLATOR_METRICS_PORT=9090
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# The demo bundle is baked in; other bundles mount as a volume (see docker-compose.yml).
COPY models/demo-de-en/ /models/demo-de-en/
USER 10001:10001
EXPOSE 50051 8080 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["translator-healthcheck"]
# Exec form: the server is PID 1 and receives SIGTERM for its graceful shutdown.
ENTRYPOINT ["translator-server"]
