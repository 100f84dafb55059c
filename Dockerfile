# syntax=docker/dockerfile:1
# The oponn image: a release build of the `oponn` binary on a slim Debian runtime.
#
# Stage 1 compiles the dependency graph alone, from the manifests and the lock file, so a
# change to the sources reuses that layer; stage 2 compiles the sources; stage 3 is the runtime.

FROM rust:1.95-slim-bookworm AS dependencies
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
COPY app/Cargo.toml app/Cargo.toml
COPY deployer/Cargo.toml deployer/Cargo.toml
COPY tests/Cargo.toml tests/Cargo.toml
# Empty targets for every workspace member: cargo needs them to resolve the workspace.
RUN mkdir -p app/src deployer/src tests/src \
    && echo 'fn main() {}' > app/src/main.rs \
    && touch app/src/lib.rs tests/src/lib.rs \
    && echo 'fn main() {}' > deployer/src/main.rs \
    && cargo build --release --locked -p oponn --bin oponn \
    && rm -rf app/src target/release/oponn target/release/deps/oponn-* \
        target/release/deps/liboponn-* target/release/.fingerprint/oponn-*
# (The fingerprints go too: COPY keeps the sources' old mtimes, which cargo would not see as newer.)

FROM dependencies AS build
COPY app app
RUN cargo build --release --locked -p oponn --bin oponn \
    && strip target/release/oponn

FROM debian:bookworm-slim AS runtime
# curl answers the HEALTHCHECK; ca-certificates lets the binary reach TLS MongoDB and Redis.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin oponn
COPY --from=build /build/target/release/oponn /usr/local/bin/oponn
USER 10001
ENV OPONN_LISTEN=0.0.0.0:8080 \
    OPONN_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]
# Exec form: the binary is PID 1 and receives SIGTERM itself (it drains and exits cleanly).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/oponn"]
CMD ["serve"]
