# Sluice: multi-stage build. `docker build -t sluice .`
# Builder: Debian with the Rust toolchain and what Pingora's build needs (cmake, a C
# compiler, OpenSSL headers). Runtime: distroless with glibc and libssl, non-root.

FROM rust:1.92-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sluice --bin sluice \
 && cp target/release/sluice /sluice

# libssl3 comes from the base image (distroless/cc ships libc and libssl).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /sluice /usr/local/bin/sluice
USER 65532:65532
EXPOSE 80 443 9901
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["run", "--admin-addr=0.0.0.0:9901", "--gateway-bind-address=0.0.0.0"]
