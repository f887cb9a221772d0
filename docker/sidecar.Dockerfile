# Sidecar image: the static `hab` supervisor at /bin/hab. The operator's pods copy it into the
# application container with an init container (`cp /bin/hab /hab-bin/hab`), so the image also
# carries busybox (static, musl) for `cp`. It can run a supervisor on its own too:
#   docker run ghcr.io/habitat-rs/hab:0.1.0 hab sup run
# Build from the repository root:
#   docker build -f docker/sidecar.Dockerfile -t ghcr.io/habitat-rs/hab:0.1.0 .
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p habitat-sidecar --bin hab \
 && strip target/release/hab \
 && ! ldd target/release/hab 2>/dev/null | grep -q '=>'

FROM busybox:1.37-musl
COPY --from=build /src/target/release/hab /bin/hab
EXPOSE 9631 9632 9638 9638/udp
ENTRYPOINT ["/bin/hab"]
CMD ["sup", "run"]
