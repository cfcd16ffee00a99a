# Prometheus from Debian's `prometheus` package, for deploy/docker-compose.yml on hosts that
# cannot pull prom/prometheus: built by deploy/docker/build-prometheus-offline.sh on the
# local Debian base. Runs like prom/prometheus: the entrypoint is the server, the compose
# file gives its flags, data in /prometheus.
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
# Debian's archive is plain HTTP, which works from inside a build; the service's start
# scripts are not used in a container.
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o prometheus -g prometheus -m 0755 /prometheus
USER prometheus
WORKDIR /prometheus
VOLUME ["/prometheus"]
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
