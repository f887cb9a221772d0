# habitat-operator image: one static (musl) binary on distroless/static, non-root.
# Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t ghcr.io/habitat-rs/habitat-operator:0.1.0 .
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
# Alpine's Rust targets x86_64/aarch64-unknown-linux-musl: the result is statically linked.
RUN cargo build --release --locked -p habitat-operator --bin habitat-operator \
 && strip target/release/habitat-operator \
 && ! ldd target/release/habitat-operator 2>/dev/null | grep -q '=>'

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/habitat-operator /habitat-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/habitat-operator"]
CMD ["run"]
