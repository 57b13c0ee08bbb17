#!/usr/bin/env bash
# Checks every deployment artifact under deploy/ with the real tools:
#   * haproxy -c -f on deploy/haproxy/haproxy.cfg and on the haproxy.cfg embedded in the Kubernetes
#     ConfigMap (backend names that do not resolve here are fine: init-addr last,libc,none);
#   * systemd-analyze verify on deploy/systemd/wharf.service (with the built binary standing in for
#     /usr/local/bin/wharf when that does not exist);
#   * wharf config check on deploy/wharf.yaml, the configuration baked into the image / mounted by the
#     compose files, and the wharf.yaml embedded in the Kubernetes ConfigMap;
#   * YAML syntax of every deploy/**/*.y*ml (all documents), JSON of deploy/clients/daemon.json, TOML of
#     hosts.toml and registries.conf;
#   * bash -n on the shell scripts;
#   * deploy/docker/build-steps.sh --check (ldd/dpkg of the built binary against the image's package
#     list, the image's HEALTHCHECK against the running binary).
# Installs haproxy, systemd (for systemd-analyze) and python3-yaml with apt-get when they are missing.
# Needs the debug build (.build/debug/wharf: `swift build`), or WHARF_BIN=PATH.
# Exit status 0 when everything passes, 1 otherwise.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WHARF_BIN="${WHARF_BIN:-$ROOT/.build/debug/wharf}"
WORK="$(mktemp -d /tmp/wharf-check-deploy.XXXXXX)"
LINKED_BINARY=""
cleanup() {
  [ -n "$LINKED_BINARY" ] && rm -f "$LINKED_BINARY"
  rm -rf "$WORK"
}
trap cleanup EXIT

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# run NAME COMMAND...: runs it, shows its output only when it fails.
run() {
  local name="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then pass "$name"; else fail "$name"; echo "$out" | sed 's/^/    /' >&2; fi
}

# ----------------------------------------------------------------------------------------- tools
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=0
need() {  # need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  [ -x "/usr/sbin/$1" ] && return 0
  echo "installing $2 (for $1)"
  if [ "$apt_updated" = 0 ]; then $SUDO apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 \
    || echo "warning: could not install $2" >&2
}
need haproxy haproxy
need systemd-analyze systemd
need python3 python3
python3 -c "import yaml" 2>/dev/null || need __python3_yaml__ python3-yaml
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"

if [ ! -x "$WHARF_BIN" ]; then
  echo "no wharf binary at $WHARF_BIN; run \`swift build\` first (or set WHARF_BIN)" >&2
  exit 1
fi

# Pulls a `data:` key's literal block out of a YAML document of a multi-document file.
extract_configmap_key() {  # FILE CONFIGMAP_NAME KEY OUT
  python3 - "$@" <<'PY'
import sys, yaml
path, name, key, out = sys.argv[1:5]
for doc in yaml.safe_load_all(open(path)):
    if doc and doc.get("kind") == "ConfigMap" and doc.get("metadata", {}).get("name") == name:
        open(out, "w").write(doc["data"][key])
        sys.exit(0)
sys.exit(f"{path}: no ConfigMap {name} with key {key}")
PY
}

# ------------------------------------------------------------------------------ YAML / JSON / TOML
while IFS= read -r f; do
  run "YAML parses: $f" python3 -c 'import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))' "$f"
done < <(find deploy -name '*.yaml' -o -name '*.yml' | sort)
run "JSON parses with registry-mirrors: deploy/clients/daemon.json" \
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["registry-mirrors"], "empty registry-mirrors"' deploy/clients/daemon.json
while IFS= read -r f; do
  run "TOML parses: $f" python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$f"
done < <(find deploy/clients -name '*.toml' -o -name 'registries.conf' | sort)

# ------------------------------------------------------------------------------------ HAProxy
run "haproxy -c: deploy/haproxy/haproxy.cfg" "$HAPROXY" -c -f deploy/haproxy/haproxy.cfg
if extract_configmap_key deploy/kubernetes/haproxy.yaml wharf-haproxy haproxy.cfg "$WORK/k8s-haproxy.cfg"; then
  run "haproxy -c: haproxy.cfg of ConfigMap wharf-haproxy (deploy/kubernetes/haproxy.yaml)" "$HAPROXY" -c -f "$WORK/k8s-haproxy.cfg"
else
  fail "extract haproxy.cfg from deploy/kubernetes/haproxy.yaml"
fi

# ------------------------------------------------------------------------------------ systemd
if command -v systemd-analyze >/dev/null 2>&1; then
  UNIT_BIN="$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' deploy/systemd/wharf.service | head -n 1)"
  if [ -n "$UNIT_BIN" ] && [ ! -e "$UNIT_BIN" ]; then
    # The unit names the installed path; let the built binary stand in for the check.
    mkdir -p "$(dirname "$UNIT_BIN")" && ln -s "$WHARF_BIN" "$UNIT_BIN" && LINKED_BINARY="$UNIT_BIN"
  fi
  run "systemd-analyze verify deploy/systemd/wharf.service" systemd-analyze verify "$ROOT/deploy/systemd/wharf.service"
  if [ -n "$LINKED_BINARY" ]; then rm -f "$LINKED_BINARY"; LINKED_BINARY=""; fi
else
  fail "systemd-analyze is not available (apt-get install systemd)"
fi

# --------------------------------------------------------------------------------- wharf config
run "wharf config check: deploy/wharf.yaml" "$WHARF_BIN" config check deploy/wharf.yaml
run "wharf config check: deploy/docker/wharf.yaml (image, compose)" "$WHARF_BIN" config check deploy/docker/wharf.yaml
# Every configuration the compose files mount at /etc/wharf/wharf.yaml.
while IFS= read -r mounted; do
  run "wharf config check: $mounted (mounted by compose)" "$WHARF_BIN" config check "deploy/$mounted"
done < <(grep -ho '\./[^: ]*:/etc/wharf/wharf.yaml' deploy/docker-compose*.yml | sed 's#^\./##; s#:/etc/wharf/wharf.yaml$##' | sort -u)
if extract_configmap_key deploy/kubernetes/wharf-config.yaml wharf-config wharf.yaml "$WORK/k8s-wharf.yaml"; then
  run "wharf config check: wharf.yaml of ConfigMap wharf-config (deploy/kubernetes/wharf-config.yaml)" "$WHARF_BIN" config check "$WORK/k8s-wharf.yaml"
else
  fail "extract wharf.yaml from deploy/kubernetes/wharf-config.yaml"
fi

# -------------------------------------------------------------------------------- shell scripts
while IFS= read -r f; do
  run "bash -n $f" bash -n "$f"
done < <( (find deploy scripts -name '*.sh'; echo .ci/run) | sort -u)

# ---------------------------------------------------------------------------- the image's steps
run "deploy/docker/build-steps.sh --check" deploy/docker/build-steps.sh --check --binary "$WHARF_BIN"

echo
if [ "$failures" -gt 0 ]; then
  echo "check-deploy: $failures check(s) failed" >&2
  exit 1
fi
echo "check-deploy: all checks passed"
