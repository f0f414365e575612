#!/usr/bin/env bash
# The system tools CI needs, installed from Debian's packages when missing (root only):
# docker.io (the engine for deploy/ci/stack.sh), debootstrap (stand-in base images) and
# prometheus (promtool, which tests/deploy/test_observability.py runs), wrk (the load tests
# and benchmarks), chromium and chromium-driver (the explanation page's browser test,
# tests/service/test_ui_browser.py; Selenium drives them and downloads nothing). .ci/run
# calls it before the tests so those tests run rather than skip (the test command's last
# line names this script when they skipped); stack.sh calls it again (a no-op then). The packages stay installed afterwards: docs/DEPLOYMENT.md lists what CI keeps.
# Exit status 0 when all are there, 1 when any is missing and could not be installed.
set -euo pipefail
missing=()
for tool in dockerd:docker.io debootstrap:debootstrap promtool:prometheus iptables:iptables \
    wrk:wrk chromium:chromium chromedriver:chromium-driver; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "tools: ${missing[*]} missing; installing them needs root" >&2
  exit 1
fi
echo "tools: installing ${missing[*]} from Debian's packages (a line per package)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" 2>&1 \
    | tee -a "$log" | { grep --line-buffered -E '^(Get:|Setting up|E:)' || true; }
}
# A fresh machine may have no package lists yet: refresh them once and try again.
if ! install || ! command -v dockerd debootstrap promtool iptables wrk chromium chromedriver >/dev/null; then
  echo "tools: refreshing the package lists (apt-get update)"
  apt-get update -q 2>&1 | tee -a "$log" | { grep --line-buffered -E '^(Get:|Err:|E:)' || true; }
  install || { tail -n 5 "$log" >&2; exit 1; }
fi
echo "tools: installed ${missing[*]}"
