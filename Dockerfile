# setowire-node container image.
#
#   docker build -t setowire-node .
#   docker run --rm -p 49737:49737/udp -p 8737:8737 setowire-node
#
# Three stages: the binary (built from this source tree with the official Rust image, or
# taken prebuilt from the build context), a minimal root filesystem cut out of Debian (the
# C library and libgcc, nothing else: no shell, no package manager, no curl), and the final
# image on that root filesystem. deploy/docker/build-offline.sh builds the same image
# without pulling anything: a Debian base made with debootstrap and the binary built on
# the host (BINARY=prebuilt). Needs BuildKit (the default of current Docker;
# DOCKER_BUILDKIT=1 on Docker 20.10), which builds only the binary stage chosen.

# The Debian release of both images below: the binary links against its glibc.
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-slim-bookworm
# "source": cargo builds the binary in RUST_IMAGE. "prebuilt": the build context holds it
# at target/docker/setowire-node (see deploy/docker/build-offline.sh).
ARG BINARY=source

FROM ${RUST_IMAGE} AS binary-source
WORKDIR /src
COPY . .
# Symbols are kept (panics and profilers name functions); the debug info is not.
RUN CARGO_PROFILE_RELEASE_STRIP=debuginfo cargo build --release --locked --bin setowire-node \
    && install -D -m 0755 target/release/setowire-node /out/setowire-node

FROM scratch AS binary-prebuilt
COPY target/docker/setowire-node /out/setowire-node

FROM binary-${BINARY} AS binary

# The runtime root filesystem: the files of the Debian packages the binary links against
# (`ldd`: libc, libm, libgcc_s), an unprivileged user and the state directory.
FROM ${DEBIAN_IMAGE} AS rootfs
COPY deploy/docker/make-rootfs.sh /usr/local/sbin/make-rootfs.sh
RUN sh /usr/local/sbin/make-rootfs.sh /rootfs 10001 libc6 libgcc-s1

FROM scratch
COPY --from=rootfs /rootfs/ /
COPY --from=binary /out/setowire-node /usr/local/bin/setowire-node
# The built-in defaults (config/node.toml, embedded in the binary) serve UDP on
# 0.0.0.0:49737 and HTTP on 0.0.0.0:8737; the admin API and /metrics stay on
# 127.0.0.1:9737 inside the container, where the health check asks. To publish 9737, set
# SETOWIRE_ADMIN_LISTEN=0.0.0.0:9737 and SETOWIRE_ADMIN_TOKEN (the node refuses an admin
# listener off loopback without a token).
ENV SETOWIRE_STATE_DIR=/var/lib/setowire-node
# The identity key and the state snapshot: keep them across containers with a volume.
VOLUME ["/var/lib/setowire-node"]
EXPOSE 49737/udp 8737 9737
# The unprivileged `setowire` user of the root filesystem, by number so that Kubernetes'
# runAsNonRoot can check it.
USER 10001:10001
WORKDIR /var/lib/setowire-node
# SIGTERM drains: GOAWAY to every peer, a last state snapshot, exit 0 (within 2 s).
STOPSIGNAL SIGTERM
# Docker 20.10 has no --start-interval: a short interval instead.
HEALTHCHECK --interval=2s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/setowire-node", "health"]
ENTRYPOINT ["/usr/local/bin/setowire-node"]
