# syntax=docker/dockerfile:1
# The oponn image: a release build of the `oponn` binary on a small Debian runtime, run as a
# non-root user. `make test` builds the same binary (no Docker engine on the CI machines) and
# lints this file with hadolint.

# --- build: dependencies first, so they are cached until Cargo.toml or Cargo.lock change ---
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY app/Cargo.toml app/Cargo.toml
COPY deployer/Cargo.toml deployer/Cargo.toml
COPY tests/Cargo.toml tests/Cargo.toml
RUN mkdir -p app/src deployer/src tests/src \
 && echo 'fn main() {}' > app/src/main.rs && touch app/src/lib.rs \
 && echo 'fn main() {}' > deployer/src/main.rs && touch tests/src/lib.rs \
 && cargo build --release --locked -p oponn \
 && rm -rf app/src deployer/src tests/src
COPY app app
COPY deployer deployer
COPY tests tests
# Touch the sources so cargo rebuilds them rather than trusting the placeholder's timestamps.
RUN touch app/src/main.rs app/src/lib.rs \
 && cargo build --release --locked -p oponn --bin oponn \
 && install -m 0755 target/release/oponn /usr/local/bin/oponn

# --- runtime ---
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates=20230311+deb12u1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home oponn
COPY --from=build /usr/local/bin/oponn /usr/local/bin/oponn
USER 10001
ENV OPONN_LISTEN=0.0.0.0:8080 OPONN_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/oponn", "probe"]
# Exec form: oponn is PID 1 and receives ECS's SIGTERM itself, then drains and exits.
ENTRYPOINT ["/usr/local/bin/oponn"]
CMD ["serve"]
