#!/usr/bin/env bash
# Makes sure the base images the Dockerfile and compose file name exist: pulled where a
# registry answers, else built as stand-ins (these machines reach none): Debian bookworm
# from debootstrap, with python3, pip and venv, tagged as the official Python image, and
# Debian's Prometheus tagged as prom/prometheus. The committed files then build and run
# unchanged. Stand-ins need root and the Debian mirror apt already uses.
set -euo pipefail
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-prom/prometheus:v2.53.3}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORK=${STANDIN_DIR:-/var/tmp/afm-standins}

have() {
  docker image inspect "$1" >/dev/null 2>&1 && return
  timeout 120 docker pull --quiet "$1" >/dev/null 2>&1 && echo "pulled $1"
}

python_image() {
  have "$PYTHON_IMAGE" && return
  local root="$WORK/rootfs"
  if [ ! -x "$root/usr/bin/python3" ]; then
    rm -rf "$root"
    mkdir -p "$WORK"
    # busybox gives the wget the official Prometheus image's healthchecks use.
    debootstrap --variant=minbase \
      --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,busybox \
      bookworm "$root" "$MIRROR" >"$WORK/debootstrap.log"
  fi
  # The host's CA bundle and apt settings: pip and apt inside builds go through the
  # same TLS proxy and snapshot mirror as the host does.
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  cp -r /etc/apt/sources.list.d /etc/apt/apt.conf.d "$root/etc/apt/"
  rm -f "$root"/etc/apt/sources.list.d/*.disabled-by-farm
  ln -sf /bin/busybox "$root/usr/local/bin/wget"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    - "$PYTHON_IMAGE" >/dev/null
}

prometheus_image() {
  have "$PROMETHEUS_IMAGE" && return
  local context
  context=$(mktemp -d)
  cp /usr/bin/prometheus /usr/bin/promtool "$context/"
  # The official image's layout: binaries in /bin, config in /etc/prometheus, data in
  # /prometheus, user nobody.
  cat >"$context/Dockerfile" <<DOCKERFILE
FROM $PYTHON_IMAGE
COPY prometheus promtool /bin/
RUN mkdir -p /etc/prometheus /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build -q -t "$PROMETHEUS_IMAGE" "$context" >/dev/null
  rm -rf "$context"
}

python_image
prometheus_image
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^(${PYTHON_IMAGE%%:*}|${PROMETHEUS_IMAGE%%:*}):"
