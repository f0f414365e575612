#!/usr/bin/env bash
# CI's deployment stage (.ci/run calls it after the test command): lints the Dockerfiles,
# builds the images with a real engine, brings the compose stack up with --wait (the
# trainer makes the default bundle), checks it from outside (deploy/ci/smoke.py), checks
# the server runs as non-root, reports image sizes and start times, and tears it all down,
# stopping the engine if it started one. Where no engine can be started it says why and
# exits 0.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/setup.sh
PROJECT=afm-ci
export AFM_PUBLISHED_PORT=${AFM_PUBLISHED_PORT:-18000} PROMETHEUS_PUBLISHED_PORT=${PROMETHEUS_PUBLISHED_PORT:-19090}
export DOCKER_BUILDKIT=0 COMPOSE_BAKE=false   # the Debian docker client has no buildx
started_engine=""
work=$(mktemp -d)

skip() { echo "deploy stage SKIPPED: $*"; exit 0; }
step() { printf '\n== %s\n' "$*"; }

stop_engine() {
  [ -n "$started_engine" ] || return 0
  kill "$started_engine" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$started_engine" 2>/dev/null || break; sleep 1; done
  started_engine=""
}

cleanup() {
  if docker info >/dev/null 2>&1; then
    compose down --volumes --remove-orphans --timeout 40 >/dev/null 2>&1 || true
    docker rm --force "${pod:-}" >/dev/null 2>&1 || true
    docker volume rm afm-ci-pod >/dev/null 2>&1 || true
  fi
  stop_engine
  rm -rf "$work"
}
trap cleanup EXIT

compose() { docker compose -p "$PROJECT" -f docker-compose.yml -f deploy/ci/compose.ci.yml "$@"; }

step "lint"
hadolint Dockerfile deploy/model.Dockerfile
echo "hadolint: Dockerfile, deploy/model.Dockerfile clean"

step "engine"
apt_install() {  # retried after refreshing the package lists, which a fresh machine may lack
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >"$work/apt.log" 2>&1 \
    || { apt-get update -q >>"$work/apt.log" 2>&1 \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$work/apt.log" 2>&1; }
}
root=""; [ "$(id -u)" = 0 ] && root=1
for tool in dockerd debootstrap promtool; do
  command -v "$tool" >/dev/null && continue
  [ -n "$root" ] || skip "$tool is missing and installing it needs root"
  apt_install docker.io debootstrap prometheus \
    || skip "cannot install docker.io, debootstrap and prometheus with apt ($(tail -n 1 "$work/apt.log"))"
  break
done
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/rules.yml
promtool test rules deploy/prometheus/rules.test.yml
if ! docker info >/dev/null 2>&1; then
  [ -n "$root" ] || skip "no container engine is running, and starting one needs root"
  # No bridge or iptables management here; compose's own network needs FORWARD open.
  iptables -P FORWARD ACCEPT 2>/dev/null || true
  dockerd --iptables=false --ip-masq=false --ip-forward=false --bridge=none \
    --storage-driver=overlay2 --pidfile "$work/dockerd.pid" >"$work/dockerd.log" 2>&1 &
  started_engine=$!
  for _ in $(seq 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || skip "dockerd did not start: $(tail -n 2 "$work/dockerd.log" | tr '\n' ' ')"
  echo "started dockerd (pid $started_engine)"
fi
export DOCKER_CONFIG="$work/docker"
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -s "$(python -c 'import compose, os; print(os.path.dirname(compose.__file__))')/docker-compose" \
  "$DOCKER_CONFIG/cli-plugins/docker-compose"
docker compose version

step "base images"
# No registry is reachable from these machines: build stand-ins under the official names.
bash deploy/ci/standins.sh
torch_wheel=$(find /opt/wheels -name 'torch-2.13.0+cpu-*.whl' -print -quit 2>/dev/null || true)
if [ -n "$torch_wheel" ] && [ ! -e "deploy/wheels/$(basename "$torch_wheel")" ]; then
  ln "$torch_wheel" deploy/wheels/ 2>/dev/null || cp "$torch_wheel" deploy/wheels/
fi

step "build"
t0=$(date +%s)
compose build >"$work/build.log" 2>&1 || { tail -n 60 "$work/build.log" >&2; exit 1; }
echo "images built in $(( $(date +%s) - t0 )) s"

step "up (first start: the trainer makes the default bundle)"
compose down --volumes --remove-orphans >/dev/null 2>&1 || true
t0=$(date +%s.%N)
compose up --detach --wait --wait-timeout 300 afm prometheus
first_start=$(python -c "import time; print(f'{time.time() - $t0:.1f}')")
compose ps --all --format 'table {{.Service}}\t{{.Status}}'

step "checks"
python deploy/ci/smoke.py --service "http://127.0.0.1:$AFM_PUBLISHED_PORT" \
  --prometheus "http://127.0.0.1:$PROMETHEUS_PUBLISHED_PORT"
uid=$(compose exec -T afm id -u)
[ "$uid" != 0 ] || { echo "the service runs as root" >&2; exit 1; }
echo "service runs as uid $uid"
if compose exec -T afm python -c 'import torch' 2>/dev/null; then
  echo "the serving image can import torch" >&2; exit 1
fi
echo "serving image has no torch"

step "model image (what deploy/k8s/deployment.yaml runs: init container, then the server)"
compose cp afm:/models/default "$work/bundle" >/dev/null 2>&1
docker build --quiet -f deploy/model.Dockerfile -t afm-serving/model:ci "$work/bundle" >/dev/null 2>&1
docker volume create afm-ci-pod >/dev/null
docker run --rm --user 10001:10001 -v afm-ci-pod:/models afm-serving/model:ci cp -r /bundle /models/default
pod=$(docker run --detach --read-only --tmpfs /tmp --network "${PROJECT}_default" \
  -e AFM_WORKERS=1 -v afm-ci-pod:/models:ro afm-serving/serve:latest)
wait_healthy() {
  for _ in $(seq 60); do
    [ "$(docker inspect --format '{{.State.Health.Status}}' "$1")" = healthy ] && return 0
    sleep 1
  done
  docker logs "$1" >&2; return 1
}
wait_healthy "$pod" && echo "serving image healthy on a bundle copied from the model image"
docker rm --force "$pod" >/dev/null
docker volume rm afm-ci-pod >/dev/null

step "restart (the bundle exists: no training)"
compose stop --timeout 40 afm prometheus >/dev/null 2>&1
t0=$(date +%s.%N)
compose up --detach --wait --wait-timeout 120 afm prometheus >/dev/null 2>&1
restart=$(python -c "import time; print(f'{time.time() - $t0:.1f}')")
compose logs trainer | grep -q "holds a bundle; nothing to do" \
  || { echo "the trainer retrained an existing bundle" >&2; exit 1; }
python deploy/ci/smoke.py --service "http://127.0.0.1:$AFM_PUBLISHED_PORT" \
  --prometheus "http://127.0.0.1:$PROMETHEUS_PUBLISHED_PORT" >/dev/null

step "figures"
for image in afm-serving/serve:latest afm-serving/train:latest afm-serving/model:ci; do
  docker image inspect --format "$image {{.Size}}" "$image" \
    | awk '{printf "%s: %.0f MB\n", $1, $2 / 1e6}'
done
echo "stack start with --wait: ${first_start} s first (training included), ${restart} s later"
echo "deploy stage PASSED"
