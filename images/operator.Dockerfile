# The operator image (charts/greenbatch: image.repository). Build from the repository root:
#   docker build -f images/operator.Dockerfile -t <registry>/greenbatch/operator:0.1.0 .
# Not built in this project's CI (no container engine there; hadolint checks it); the binary it
# holds is the one every test runs (tests/tests/chart.rs runs it with the chart's Deployment args).
FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The operator does not link libtorch: only its own crates and kube-rs are compiled.
RUN cargo build --release --locked -p greenbatch-operator \
 && cp target/release/greenbatch-operator /greenbatch-operator

# glibc + libgcc, nothing else; runs as the unprivileged "nonroot" user (65532), as the chart's
# securityContext requires.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /greenbatch-operator /usr/local/bin/greenbatch-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/greenbatch-operator"]
