# syntax=docker/dockerfile:1
# llm-forward container image.
#   docker build -t llm-forward .
#   docker run -p 8000:8000 llm-forward                       # built-in default: / -> api.openai.com
#   docker run -p 8000:8000 -v ./.env:/data/.env:ro llm-forward               # openai-forward's .env
#   docker run -p 8000:8000 -v ./conf/my.yaml:/etc/llm-forward/llm-forward.yaml:ro llm-forward
# The entrypoint (deploy/docker-entrypoint.sh) passes `-c /etc/llm-forward/llm-forward.yaml` only
# when that file exists; without it the gateway reads openai-forward's variables (`-e`, or a
# `.env` in the working directory /data), else its built-in default (0.0.0.0:8000).
# A YAML config must listen on 0.0.0.0 (not 127.0.0.1) to be reachable through -p; the health
# check below assumes port 8000 (set HEALTH_PORT otherwise). `docker stop` sends SIGTERM and
# kills after 10 s; streams in flight may need up to grace_period (60 s by default): run with
# --stop-timeout 70 (compose: stop_grace_period: 70s), or lower grace_period.

# --- build ---------------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
# cmake: zlib-ng (Pingora); pkg-config + libssl-dev: link Debian's OpenSSL rather than compiling
# the vendored copy (OPENSSL_NO_VENDOR below) — the runtime stage ships the matching libssl3.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
ENV OPENSSL_NO_VENDOR=1
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds; the binary is copied out of the
# mount because the mount is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin llm-forward \
 && install -m 0755 target/release/llm-forward /usr/local/bin/llm-forward \
 && strip /usr/local/bin/llm-forward
# Stripped here only: the release profile keeps `debug = 1` for profiling on a workstation, which
# the image does not need (the symbols are most of the binary's size).

# --- runtime -------------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin llm-forward
COPY --from=build /usr/local/bin/llm-forward /usr/local/bin/llm-forward
COPY --chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
# The working directory: a mounted `.env` is read from here, and chat logs (Log/chat) and a
# disk cache with a relative path land here (mount a volume on /data to keep them).
RUN mkdir -p /etc/llm-forward /data && chown 10001:10001 /data
USER 10001:10001
# pid_file and upgrade_sock default to a private directory this user creates (/tmp/llm-forward-10001).
WORKDIR /data
EXPOSE 8000
ENV RUST_LOG=info HEALTH_PORT=8000
# No curl in the slim image: bash's /dev/tcp sends one request and reads the status line.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/$HEALTH_PORT && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r -t 2 line <&3 && [[ $line == *' 200 '* ]]"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["run"]
