# syntax=docker/dockerfile:1
# secret-ferry container image.
#   docker build -t secret-ferry:0.1.0 .
#   docker run --rm --read-only secret-ferry:0.1.0 --version
#
# Runtime: gcr.io/distroless/cc-debian12 (glibc, libgcc, CA certificates, tzdata, user 65532,
# no shell, no package manager). Not distroless/static: that needs a fully static (musl)
# binary, and a musl build of aws-lc-sys (the TLS crypto under rustls) plus musl's slow
# multi-threaded malloc are risks this build avoids. The builder is Debian 12 as well, so the
# binary links against the same glibc (2.36) that the runtime image ships.
#
# Where the binary comes from: the `build` stage below (the default), or, with
# `--build-arg BINARY_FROM=prebuilt`, a release binary named `secret-ferry` at the root of the
# build context. scripts/image.sh uses the second on machines without a registry; the runtime
# stage is the same either way, and BuildKit/buildah skip the stage that is not used.
ARG BINARY_FROM=build

FROM rust:1.95.0-bookworm AS build
WORKDIR /src
# Only what the build needs (see .dockerignore): the manifest, the lock file and the sources.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Release profile (Cargo.toml): lto, codegen-units = 1, strip, opt-level "s".
# The cache mounts keep the registry and target directory between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
    && install -D -m 0755 target/release/secret-ferry /out/secret-ferry \
    && /out/secret-ferry --version

FROM scratch AS prebuilt
COPY secret-ferry /out/secret-ferry

FROM ${BINARY_FROM} AS binary

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=binary /out/secret-ferry /usr/local/bin/secret-ferry
# The distroless "nonroot" user; the daemon writes only to its target volume, so the root
# filesystem can be mounted read-only.
USER 65532:65532
# One malloc arena instead of glibc's default of eight per core: the daemon's work is a few
# threads of small, short-lived allocations, and spare arenas only keep freed memory. Measured
# with bench/run.py (release binary, 200 B secrets, batch, after 120 s of polling): RssAnon
# 9.2 → 6.9 MiB at 1,000 secrets, 60.6 → 52.1 MiB at 10,000 (docs/performance.md). bench/ runs
# the daemon with the ENV lines of this file, so its figures are the image's.
ENV MALLOC_ARENA_MAX=1
# A fixed mmap threshold (glibc's default, 128 KiB, without its adjustment): glibc otherwise
# raises the threshold to the size of each large block freed (up to 32 MiB), the config file
# and the vectors of its parse among them, and from then on serves blocks of that size from
# the heap, where a freed one stays resident under what was allocated after it. Measured with
# tests/it/scale.rs at 10,000 secrets after 10 polls: RssAnon 12.5 → 11.1 MiB.
ENV MALLOC_MMAP_THRESHOLD_=131072
EXPOSE 9779
ENTRYPOINT ["/usr/local/bin/secret-ferry"]
CMD ["run", "--config", "/etc/secret-ferry/config/config.yaml"]
