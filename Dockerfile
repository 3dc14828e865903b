# groupbinder container image: a static binary on a distroless base, running as non-root.
# Not built in this project's CI (its machines have no container engine); build it with
#   docker build -t ghcr.io/groupbinder/groupbinder:0.1.0 .
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p groupbinder --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/groupbinder /groupbinder

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /groupbinder /groupbinder
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/groupbinder"]
CMD ["run"]
