#!/usr/bin/env bash
# Picks the base images CI builds and runs on, and writes their names to the file $1 as
# AFM_PYTHON_IMAGE=... and AFM_PROMETHEUS_IMAGE=... lines (the Dockerfile's PYTHON_IMAGE
# build argument and the compose file read them). The official images are used where a
# registry answers. Where none does (these machines), stand-ins are built under the
# project's own namespace, never under an official name, so no later build on the
# machine picks one up by mistake:
#   afm-standin/python:3.11-slim-bookworm  Debian bookworm from debootstrap, with python3,
#                                          pip and venv (the official image's role)
#   afm-standin/prometheus:v2.53.3         Debian's Prometheus on that base, laid out as
#                                          the official image is
# Stand-ins already there are reused (docs/DEPLOYMENT.md: the cache CI keeps). The
# debootstrap tree is built in a temporary directory and removed once imported.
# Stand-ins need root and the Debian mirror apt already uses.
set -euo pipefail
out=${1:?usage: standins.sh OUTPUT_ENV_FILE}
PYTHON_OFFICIAL=python:3.11-slim-bookworm
PROMETHEUS_OFFICIAL=prom/prometheus:v2.53.3
NAMESPACE=afm-standin
MIRROR=${MIRROR:-http://deb.debian.org/debian}

have() {
  docker image inspect "$1" >/dev/null 2>&1 && return
  timeout 120 docker pull --quiet "$1" >/dev/null 2>&1 && echo "pulled $1"
}

python_image() {
  local standin="$NAMESPACE/$PYTHON_OFFICIAL"
  if have "$PYTHON_OFFICIAL"; then python_image=$PYTHON_OFFICIAL; return; fi
  python_image=$standin
  if docker image inspect "$standin" >/dev/null 2>&1; then echo "reusing $standin"; return; fi
  local work root
  work=$(mktemp -d -t afm-standin.XXXXXX)
  root="$work/rootfs"
  echo "building $standin: debootstrap bookworm (about a minute; a line every 25 packages)"
  # busybox gives the wget the official Prometheus image's healthchecks use.
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,busybox \
    bookworm "$root" "$MIRROR" 2>&1 | tee "$work/debootstrap.log" | awk '
      /^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) [a-z0-9]/ {
        if (++n % 25 == 0) { print "debootstrap: " n " package steps"; fflush() } next }
      { print "debootstrap: " $0; fflush() }'
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
    - "$standin" >/dev/null
  rm -rf "$work"
  echo "built $standin"
}

prometheus_image() {
  local standin="$NAMESPACE/prometheus:${PROMETHEUS_OFFICIAL#*:}"
  if have "$PROMETHEUS_OFFICIAL"; then prometheus_image=$PROMETHEUS_OFFICIAL; return; fi
  prometheus_image=$standin
  if docker image inspect "$standin" >/dev/null 2>&1; then echo "reusing $standin"; return; fi
  local context
  context=$(mktemp -d -t afm-standin.XXXXXX)
  cp "${PROMETHEUS_BIN:-/usr/bin}/prometheus" "${PROMETHEUS_BIN:-/usr/bin}/promtool" "$context/"
  # The official image's layout: binaries in /bin, config in /etc/prometheus, data in
  # /prometheus, user nobody.
  cat >"$context/Dockerfile" <<DOCKERFILE
FROM $python_image
COPY prometheus promtool /bin/
RUN mkdir -p /etc/prometheus /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build --rm --force-rm -t "$standin" "$context" \
    | { grep --line-buffered '^Step ' || true; }
  rm -rf "$context"
  echo "built $standin"
}

python_image
prometheus_image
printf 'AFM_PYTHON_IMAGE=%s\nAFM_PROMETHEUS_IMAGE=%s\n' "$python_image" "$prometheus_image" >"$out"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
  | grep -E "^(${python_image%:*}|${prometheus_image%:*}):" || true
