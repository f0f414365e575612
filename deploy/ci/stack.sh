#!/usr/bin/env bash
# CI's deployment stage (.ci/run calls it after the test command): lints the Dockerfiles,
# builds the images with a real engine, brings the compose stack up with --wait (the
# trainer makes the default bundle), checks it from outside (deploy/ci/smoke.py: the
# service, a shadow model, Prometheus, the alert rules, a drift alert fired by traffic with
# a shifted field and read from ALERTS, and every Grafana dashboard query), checks the
# server runs as non-root, reports image sizes and start times, and tears it all down.
#
# It leaves the machine as it found it: it removes every container, volume, network and
# image the run created, restores the iptables FORWARD policy and IPv4 forwarding, removes
# its temporary files and the torch wheel it linked into deploy/wheels/, and stops the
# engine if it started one. It keeps only the cache docs/DEPLOYMENT.md describes (the base
# images, or their afm-standin/ stand-ins, and the Debian packages deploy/ci/tools.sh
# installs; AFM_CI_KEEP_BASE_IMAGES=0 removes the images too). The machine's state is
# listed before and after, in the log. Where no engine can be started it says why and
# exits 0.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/setup.sh
PROJECT=afm-ci
export AFM_PUBLISHED_PORT=${AFM_PUBLISHED_PORT:-18000} PROMETHEUS_PUBLISHED_PORT=${PROMETHEUS_PUBLISHED_PORT:-19090}
export AFM_IMAGE_TAG=ci                        # never replaces a user's afm-serving/*:latest
# The admin routes on, so the checks can set a shadow model (/admin/shadow).
AFM_ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export AFM_ADMIN_TOKEN
export DOCKER_BUILDKIT=0 COMPOSE_BAKE=false   # the Debian docker client has no buildx
KEEP_BASE_IMAGES=${AFM_CI_KEEP_BASE_IMAGES:-1}
FORWARD=/proc/sys/net/ipv4/ip_forward
work=$(mktemp -d -t afm-ci.XXXXXX)
started_engine="" linked_wheel="" forward_policy="" ip_forward_before="" engine_ready=""

skip() { echo "deploy stage SKIPPED: $*"; exit 0; }
step() { printf '\n== %s\n' "$*"; }
compose() { docker compose -p "$PROJECT" -f docker-compose.yml -f deploy/ci/compose.ci.yml "$@"; }

host_state() {
  local policy
  policy=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}' || true)
  echo "iptables FORWARD policy: ${policy:-none (no iptables)}"
  echo "net.ipv4.ip_forward: $(cat "$FORWARD")"
  echo "deploy/wheels: $(cd deploy/wheels && ls | tr '\n' ' ')"
  echo "temporary trees: $(ls -d /tmp/afm-standin.* /var/tmp/afm-standins 2>/dev/null | tr '\n' ' ')"
}

engine_state() {
  echo "images:";     docker image ls -a --format '  {{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}'
  echo "containers:"; docker ps -a --format '  {{.Names}} {{.Image}} {{.Status}}'
  echo "volumes:";    docker volume ls --format '  {{.Name}}'
  echo "networks:";   docker network ls --format '  {{.Name}} {{.Driver}}'
}

snapshot() {  # what exists now, to remove afterwards only what the run added
  docker image ls -aq --no-trunc | sort -u >"$work/images.$1"
  docker ps -aq --no-trunc | sort -u >"$work/containers.$1"
  docker volume ls -q | sort -u >"$work/volumes.$1"
  docker network ls -q --no-trunc | sort -u >"$work/networks.$1"
}

added() { comm -13 "$work/$1.before" <(sort -u "$work/$1.now"); }

remove_what_the_run_added() {
  compose down --volumes --remove-orphans --timeout 40 >/dev/null 2>&1 || true
  snapshot now
  added containers | xargs -r docker rm --force >/dev/null 2>&1 || true
  added volumes | xargs -r docker volume rm --force >/dev/null 2>&1 || true
  added networks | xargs -r docker network rm >/dev/null 2>&1 || true
  local keep=()
  if [ "$KEEP_BASE_IMAGES" = 1 ] && [ -f "$work/images.env" ]; then
    # shellcheck disable=SC1091
    source "$work/images.env"
    for image in "$AFM_PYTHON_IMAGE" "$AFM_PROMETHEUS_IMAGE"; do
      keep+=("$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)")
    done
  fi
  # Tagged images first (their untagged build layers go with them), then what is left;
  # a kept image's parent layers refuse removal and stay.
  for _ in 1 2; do
    snapshot now
    added images | grep -vxF -f <(printf '%s\n' "${keep[@]}" "") \
      | xargs -r docker image rm --force >/dev/null 2>&1 || true
  done
}

cleanup() {
  set +e
  if [ -n "$engine_ready" ]; then
    step "cleanup: removing what this run created"
    remove_what_the_run_added
    echo "-- engine state after (compare with the listing before):"
    engine_state
  fi
  if [ -n "$started_engine" ]; then
    kill "$started_engine" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$started_engine" 2>/dev/null || break; sleep 1; done
  fi
  [ -n "$forward_policy" ] && iptables -P FORWARD "$forward_policy"
  [ -n "$ip_forward_before" ] && echo "$ip_forward_before" >"$FORWARD"
  [ -n "$linked_wheel" ] && rm -f "$linked_wheel"
  rm -rf "$work" /var/tmp/afm-standins /tmp/afm-standin.*
  echo "-- host state after:"
  host_state
}
trap cleanup EXIT

step "host state before"
host_state

step "lint"
hadolint Dockerfile deploy/model.Dockerfile
echo "hadolint: Dockerfile, deploy/model.Dockerfile clean"

step "tools and engine"
bash deploy/ci/tools.sh || skip "docker.io, debootstrap and prometheus are needed and could not be installed"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/rules.yml
promtool test rules deploy/prometheus/rules.test.yml
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || skip "no container engine is running, and starting one needs root"
  # The engine manages no bridge and no iptables rules here; compose's network needs the
  # FORWARD chain open and IPv4 forwarding on. Both are put back when the run ends.
  forward_policy=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}')
  [ -n "$forward_policy" ] && iptables -P FORWARD ACCEPT
  ip_forward_before=$(cat "$FORWARD")
  echo 1 >"$FORWARD" 2>/dev/null || ip_forward_before=""
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
compose down --volumes --remove-orphans >/dev/null 2>&1 || true  # a killed run's leftovers
snapshot before
engine_ready=1
echo "-- engine state before:"
engine_state

step "base images"
bash deploy/ci/standins.sh "$work/images.env"
set -a; source "$work/images.env"; set +a
echo "building on $AFM_PYTHON_IMAGE; Prometheus from $AFM_PROMETHEUS_IMAGE"
torch_wheel=$(find /opt/wheels -name 'torch-2.13.0+cpu-*.whl' -print -quit 2>/dev/null || true)
if [ -n "$torch_wheel" ] && [ ! -e "deploy/wheels/$(basename "$torch_wheel")" ]; then
  linked_wheel="deploy/wheels/$(basename "$torch_wheel")"
  ln "$torch_wheel" "$linked_wheel" 2>/dev/null || cp "$torch_wheel" "$linked_wheel"
fi

step "build (each Dockerfile step as it starts)"
t0=$(date +%s)
if ! compose build 2>&1 | tee "$work/build.log" \
    | { grep --line-buffered -E '^Step [0-9]+/[0-9]+ : ' || true; }; then
  tail -n 60 "$work/build.log" >&2; exit 1
fi
echo "images built in $(( $(date +%s) - t0 )) s"

step "up (first start: the trainer makes the default bundle)"
t0=$(date +%s.%N)
compose up --detach --wait --wait-timeout 600 afm prometheus \
  || { compose logs --no-color trainer afm | tail -n 40 >&2; exit 1; }
first_start=$(python -c "import time; print(f'{time.time() - $t0:.1f}')")
compose ps --all --format 'table {{.Service}}\t{{.Status}}'

step "checks"
python deploy/ci/smoke.py --service "http://127.0.0.1:$AFM_PUBLISHED_PORT" \
  --prometheus "http://127.0.0.1:$PROMETHEUS_PUBLISHED_PORT" --dashboard deploy/grafana/dashboards/afm.json \
  --admin-token "$AFM_ADMIN_TOKEN" --drift
uid=$(compose exec -T afm id -u)
[ "$uid" != 0 ] || { echo "the service runs as root" >&2; exit 1; }
echo "service runs as uid $uid"
if compose exec -T afm python -c 'import torch' 2>/dev/null; then
  echo "the serving image can import torch" >&2; exit 1
fi
echo "serving image has no torch"

step "model image (what deploy/k8s/deployment.yaml runs: init container, then the server)"
compose cp afm:/models/default "$work/bundle" >/dev/null 2>&1
docker build --quiet --build-arg "PYTHON_IMAGE=$AFM_PYTHON_IMAGE" -f deploy/model.Dockerfile \
  -t afm-serving/model:ci "$work/bundle" >/dev/null
docker volume create afm-ci-pod >/dev/null
docker run --rm --user 10001:10001 -v afm-ci-pod:/models afm-serving/model:ci cp -r /bundle /models/default
pod=$(docker run --detach --read-only --tmpfs /tmp --network "${PROJECT}_default" \
  -e AFM_WORKERS=1 -v afm-ci-pod:/models:ro "afm-serving/serve:$AFM_IMAGE_TAG")
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
# The stop closed the first run's impression log files in their volume: complete and readable.
compose exec -T afm python -c "
import pathlib, pyarrow.parquet as pq
files = sorted(pathlib.Path('/var/log/afm/impressions').rglob('part-*.parquet'))
assert files, 'no closed impression log file after a graceful stop'
print(f'impression log: {len(files)} closed file(s), {sum(pq.read_metadata(f).num_rows for f in files)} impressions')"

step "figures"
for image in "afm-serving/serve:$AFM_IMAGE_TAG" "afm-serving/train:$AFM_IMAGE_TAG" afm-serving/model:ci; do
  docker image inspect --format "$image {{.Size}}" "$image" \
    | awk '{printf "%s: %.0f MB\n", $1, $2 / 1e6}'
done
echo "stack start with --wait: ${first_start} s first (training included), ${restart} s later"
echo "deploy stage PASSED"
