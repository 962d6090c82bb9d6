# The portcullis image: one binary for the controller, the webhook and the sidecar, on a
# distroless base, non-root, and fit for a read-only root filesystem (it writes nothing;
# the IANA time zone database and the TLS code are built in). Build: `make image` (docker,
# podman or buildah: packaging/image.sh). Base images are named in full: podman and buildah
# resolve no short name that their registries.conf does not alias, and `rust` has no alias.
# The toolchain that packaging/hot-symbols.txt was made with (`make hot-symbols`): its
# symbol names carry the compiler's version, and rust-lld (the default linker on x86_64
# since 1.90) lays those functions out together (build.rs). The crate builds with 1.89 and
# later. bookworm, as the distroless base is Debian 12 (the glibc the binary links against
# must not be newer than the base's).
FROM docker.io/library/rust:1.95.0-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY packaging/hot-symbols.txt ./packaging/
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
