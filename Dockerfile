# The portcullis image: one binary for the controller, the webhook and the sidecar, on a
# distroless base, non-root, and fit for a read-only root filesystem (it writes nothing;
# the IANA time zone database and the TLS code are built in). Build: `make image`.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
RUN cargo build --release --locked --bin portcullis

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["--help"]
