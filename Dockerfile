# syntax=docker/dockerfile:1
#
# The Rampart agent image, for machines with Docker (buildx):
#
#   docker buildx build --platform linux/arm64 -o type=docker,dest=rampart-agent-arm64.tar .
#
# (linux/arm/v7 and linux/amd64 likewise; one platform per tarball, as
# RouterOS cannot load a multi-platform one). Without Docker,
# `go run ./cmd/rampart-image --arch arm64 --out rampart-agent-arm64.tar`
# builds the same image; keep the two equal (container/image/image.go:
# Entrypoint, User, Env, CACertsPath; container.StateDir). --build-arg
# VERSION=v1.2.3 is stamped into the agent, as rampart-image --agent-version. The Go builder writes a single
# uncompressed layer, the layout RouterOS loads most reliably; if RouterOS
# refuses a buildx tarball, use the Go builder's.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS TARGETARCH TARGETVARIANT
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (CGO_ENABLED=0), -trimpath, stripped, the version stamped;
# linux/arm is ARMv7 (GOARM=7).
RUN set -eu; \
    if [ "$TARGETARCH" = arm ]; then GOARM="${TARGETVARIANT#v}"; export GOARM="${GOARM:-7}"; fi; \
    CGO_ENABLED=0 GOOS="$TARGETOS" GOARCH="$TARGETARCH" GOFLAGS=-buildvcs=false \
      go build -trimpath -ldflags "-s -w -X github.com/rampart-fw/rampart/internal/buildinfo.version=$VERSION" \
        -o /rootfs/rampart-agent ./cmd/rampart-agent
# /data owned by the unprivileged image user, and passwd/group naming it.
RUN set -eu; \
    mkdir -p /rootfs/etc /datafs/data; chmod 700 /datafs/data; \
    printf 'root:x:0:\nrampart:x:65532:\n' > /rootfs/etc/group; \
    printf 'root:x:0:0:root:/:/sbin/nologin\nrampart:x:65532:65532:rampart:/data:/sbin/nologin\n' > /rootfs/etc/passwd

FROM scratch
ARG VERSION=dev
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /rootfs/ /
COPY --from=build --chown=65532:65532 /datafs/ /
USER 65532:65532
ENV RAMPART_STATE_DIR=/data \
    RAMPART_ROUTEROS_ADDR=172.17.0.1:8728 \
    RAMPART_WAN_LIST=WAN
VOLUME ["/data"]
WORKDIR /
LABEL org.opencontainers.image.title="rampart-agent" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.source="https://github.com/rampart-fw/rampart"
ENTRYPOINT ["/rampart-agent"]
