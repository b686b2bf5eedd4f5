# syntax=docker/dockerfile:1
#
# One image with the four service binaries in /usr/local/bin; the Kubernetes
# Deployment picks one with `command` (see helm/).
#
#   docker build -t order-system:0.1.0 .                    # compiles in the pinned Rust stage
#
#   cargo build --release --locked --workspace --bins                   # or reuse binaries built on the host
#   podman build --pull=never --network=host --build-arg BIN_SOURCE=prebuilt -t order-system:0.1.0 .
#
# The prebuilt path needs binaries linked against Debian bookworm's glibc, libpq and
# libsqlite3 (built on bookworm, or in this file's builder stage).

# Where the binaries come from: "builder" (compile here) or "prebuilt" (target/release).
ARG BIN_SOURCE=builder
# Pinned base images. The Rust version must be at least the newest rust-version of the
# locked dependencies (tests/helm checks it against Cargo.lock).
ARG RUST_IMAGE=docker.io/library/rust:1.95.0-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# ---- builder: compile the four service binaries --------------------------------------
FROM ${RUST_IMAGE} AS builder
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpq-dev libsqlite3-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bins \
        -p user-service -p billing-service -p order-service -p notification-service \
 && mkdir -p /out \
 && cp target/release/user-service target/release/billing-service \
       target/release/order-service target/release/notification-service /out/

# ---- prebuilt: the binaries from the host's target/release -----------------------------
FROM scratch AS prebuilt
COPY target/release/user-service target/release/billing-service target/release/order-service target/release/notification-service /out/

# ---- bin: whichever of the two BIN_SOURCE names ----------------------------------------
FROM ${BIN_SOURCE} AS bin

# ---- stripped: the same binaries without debug info (function names stay, for backtraces);
# the release profile keeps line tables, which would triple the image's size.
FROM ${RUNTIME_IMAGE} AS stripped
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
COPY --from=bin /out/ /out/
RUN strip --strip-debug /out/*

# ---- runtime ---------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
# The shared libraries the binaries link (PostgreSQL and SQLite clients) and the CA
# certificates; no compiler, no package lists. Nothing here needs a shell at run time.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpq5 libsqlite3-0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc /usr/share/man \
 && groupadd --gid 10001 app \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=stripped --chown=0:0 --chmod=0755 /out/ /usr/local/bin/
LABEL org.opencontainers.image.title="order-system" \
      org.opencontainers.image.description="user-service, billing-service, order-service and notification-service binaries" \
      org.opencontainers.image.licenses="MIT"
ENV BIND_ADDR=0.0.0.0:8080 \
    RUST_LOG=info
EXPOSE 8080
USER 10001:10001
STOPSIGNAL SIGTERM
# Exec form, no shell. Choose the service with the command, e.g.
#   docker run ... order-system:0.1.0 user-service
CMD ["order-service"]
