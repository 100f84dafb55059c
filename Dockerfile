# The oponn image: a release build of the `oponn` binary on a small Debian runtime, run as a
# non-root user. `make test` builds the same binary (no Docker engine on the CI machines) and
# lints this file with hadolint.
#
# Two ways to the binary. `docker build .` (the last stage) compiles it here. CodeBuild has
# already compiled and smoke-tested it in `make test` (scripts/smoke-release), so it builds
# `--target prebuilt`, which copies that binary from .prebuilt/oponn: the workspace compiles
# once per build. Both stages run on the same runtime stage.
#
# Base images come from ECR Public's copy of the Docker Official Images
# (public.ecr.aws/docker/library/...), not Docker Hub: Docker Hub limits anonymous pulls per
# IP address, and CodeBuild's shared addresses reach that limit (deployer/README.md cites the
# sources). No `# syntax=` line either: it would pull the Dockerfile frontend from Docker Hub.

# --- build: dependencies first, so they are cached until Cargo.toml or Cargo.lock change ---
# Rust 1.95.0 exactly, the toolchain rust-toolchain.toml pins (that file is not copied in: it
# also names rustfmt and clippy, which this build does not need and rustup would download).
FROM public.ecr.aws/docker/library/rust:1.95.0-slim-bookworm AS build
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

# --- runtime: everything but the binary ---
FROM public.ecr.aws/docker/library/debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates=20230311+deb12u1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home oponn
USER 10001
ENV OPONN_LISTEN=0.0.0.0:8080 OPONN_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/oponn", "probe"]
# Exec form: oponn is PID 1 and receives ECS's SIGTERM itself, then drains and exits.
ENTRYPOINT ["/usr/local/bin/oponn"]
CMD ["serve"]

# --- prebuilt: the binary `make test` compiled and tested (CodeBuild: buildspec.yml) ---
FROM runtime AS prebuilt
COPY .prebuilt/oponn /usr/local/bin/oponn

# --- from source (the default): the binary compiled in the build stage ---
FROM runtime AS from-source
COPY --from=build /usr/local/bin/oponn /usr/local/bin/oponn
