# The portcullis image: one binary for the controller, the webhook and the sidecar, on a
# distroless base, non-root, and fit for a read-only root filesystem (it writes nothing;
# the IANA time zone database and the TLS code are built in). Build: `make image` (docker,
# podman or buildah: packaging/image.sh). Base images are named in full: podman and buildah
# resolve no short name that their registries.conf does not alias, and `rust` has no alias.
# 1.89 is the crate's rust-version; bookworm, as the distroless base is Debian 12 (the glibc
# the binary links against must not be newer than the base's).
FROM docker.io/library/rust:1.89-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY crates ./crates
COPY src ./src
COPY examples ./examples
RUN cargo build --release --locked --bin portcullis

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["--help"]
