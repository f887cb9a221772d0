# The example application image of examples/k8s/leader.yaml and config.yaml: the package
# examples/packages/hello installed under /hab/pkgs, on busybox (its run hook needs sh, kill and
# sleep). The operator's pods bring `hab` from the sidecar image. Build from the repository root:
#   docker build -f docker/hello.Dockerfile -t ghcr.io/habitat-rs/hello:0.1.0 .
FROM busybox:1.37-musl
COPY examples/packages/hello /hab/pkgs/habitat-rs/hello/0.1.0/20261122000000
