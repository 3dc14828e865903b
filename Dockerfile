# groupbinder's container image: one static binary on an empty base, run as 65532 (non-root).
#   docker build -t ghcr.io/groupbinder/groupbinder:0.1.0 .
# `make image` builds the same image without a container engine: it runs the same build script
# and reads this file's final stage (tools/image.sh), which must stay FROM scratch with one COPY.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN tools/build-release.sh /groupbinder

FROM scratch
COPY --from=build /groupbinder /groupbinder
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/groupbinder"]
CMD ["run"]
