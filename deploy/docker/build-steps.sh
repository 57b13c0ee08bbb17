#!/usr/bin/env bash
# The steps of deploy/Dockerfile, run without Docker on a Debian bookworm machine with Swift on PATH.
#
#   deploy/docker/build-steps.sh                 build stage + runtime checks (slow: a release build)
#   deploy/docker/build-steps.sh --check         runtime checks only, on an already built binary (fast)
#
# Options:
#   --binary PATH        binary to check (default: the static release build of this script if there
#                        is one, else .build/debug/wharf, else .build/release/wharf)
#   --scratch-path DIR   SwiftPM build folder of the full build (default $WHARF_BUILD_SCRATCH or
#                        /tmp/wharf-docker-build; kept apart from .build so a release build with
#                        --static-swift-stdlib neither rebuilds .build/release nor holds its lock)
#   --stage DIR          where the runtime file system is assembled (default: a temp folder)
#
# Build stage: installs BUILD_PACKAGES (read from the Dockerfile) when missing and runs
#   swift build -c release --product wharf --static-swift-stdlib
# Runtime stage, checked here:
#   * `ldd` of the binary; every library it needs must come from a Debian package that is either in
#     RUNTIME_PACKAGES (read from the Dockerfile) or part of debian:bookworm-slim itself (libc6,
#     libgcc-s1), found with `dpkg -S`. Swift runtime libraries from the toolchain must not appear in a
#     --static-swift-stdlib build; for a dynamically linked (debug) binary each one must have the
#     static archive that --static-swift-stdlib links instead.
#   * the files the Dockerfile copies into the image exist, the config baked into the image passes
#     `wharf config check`, and the HEALTHCHECK script answers healthy against the binary serving
#     that config (on a loopback port, with a temp data folder) and unhealthy once it is gone.
# Exit status 0 when everything holds, 1 otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DOCKERFILE="$ROOT/deploy/Dockerfile"
MODE=full
BINARY=""
SCRATCH="${WHARF_BUILD_SCRATCH:-${TMPDIR:-/tmp}/wharf-docker-build}"
STAGE=""

while [ $# -gt 0 ]; do
  case "$1" in
    --check) MODE=check ;;
    --binary) BINARY="$2"; shift ;;
    --scratch-path) SCRATCH="$2"; shift ;;
    --stage) STAGE="$2"; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# ARG NAME="a b c" from the Dockerfile: the single source of the package lists.
dockerfile_arg() {
  sed -n "s/^ARG $1=\"\\(.*\\)\"\$/\\1/p" "$DOCKERFILE" | head -n 1
}
BUILD_PACKAGES="$(dockerfile_arg BUILD_PACKAGES)"
RUNTIME_PACKAGES="$(dockerfile_arg RUNTIME_PACKAGES)"
# Present in every debian:bookworm-slim image (Essential/Priority required, needed by apt itself).
BASE_PACKAGES="libc6 libgcc-s1"
[ -n "$BUILD_PACKAGES" ] || { echo "no ARG BUILD_PACKAGES in $DOCKERFILE" >&2; exit 1; }
[ -n "$RUNTIME_PACKAGES" ] || { echo "no ARG RUNTIME_PACKAGES in $DOCKERFILE" >&2; exit 1; }
echo "build packages:   $BUILD_PACKAGES"
echo "runtime packages: $RUNTIME_PACKAGES (+ bookworm-slim: $BASE_PACKAGES)"

# ---------------------------------------------------------------------------------------- build stage
if [ "$MODE" = full ]; then
  missing=()
  for p in $BUILD_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  fi
  if [ ! -d "$SCRATCH/checkouts" ] && [ -d "$ROOT/.build/checkouts" ]; then
    # Reuse the dependencies already resolved in .build (works offline).
    mkdir -p "$SCRATCH"
    cp -a "$ROOT/.build/checkouts" "$ROOT/.build/repositories" "$ROOT/.build/workspace-state.json" "$SCRATCH/" 2>/dev/null || true
    [ -d "$ROOT/.build/artifacts" ] && cp -a "$ROOT/.build/artifacts" "$SCRATCH/" || true
  fi
  echo "+ swift build -c release --product wharf --static-swift-stdlib --scratch-path $SCRATCH"
  (cd "$ROOT" && swift build -c release --product wharf --static-swift-stdlib --scratch-path "$SCRATCH")
  BINARY="$(cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/wharf"
fi

if [ -z "$BINARY" ]; then
  for candidate in "$SCRATCH/release/wharf" "$ROOT/.build/debug/wharf" "$ROOT/.build/release/wharf"; do
    if [ -x "$candidate" ]; then BINARY="$candidate"; break; fi
  done
fi
[ -n "$BINARY" ] && [ -x "$BINARY" ] || { echo "no wharf binary to check (build one first)" >&2; exit 1; }
echo "binary: $BINARY"

# Stage the runtime file system the way the Dockerfile's COPY lines do.
cleanup_stage=0
if [ -z "$STAGE" ]; then STAGE="$(mktemp -d /tmp/wharf-stage.XXXXXX)"; cleanup_stage=1; fi
WHARF_PID=""
cleanup() {
  if [ -n "$WHARF_PID" ]; then kill "$WHARF_PID" 2>/dev/null || true; wait "$WHARF_PID" 2>/dev/null || true; fi
  if [ "$cleanup_stage" = 1 ]; then rm -rf "$STAGE"; fi
}
trap cleanup EXIT
for f in deploy/docker/wharf.yaml deploy/docker/healthcheck.sh Package.swift Package.resolved; do
  [ -e "$ROOT/$f" ] || fail "$f (copied by the Dockerfile) is missing"
  grep -q "$f" "$DOCKERFILE" || [ "$f" = Package.swift ] || [ "$f" = Package.resolved ] || fail "Dockerfile does not copy $f"
done
install -D -m 0755 "$BINARY" "$STAGE/usr/local/bin/wharf"
if [ "$MODE" = full ]; then strip "$STAGE/usr/local/bin/wharf"; fi   # as the Dockerfile does
install -D -m 0644 "$ROOT/deploy/docker/wharf.yaml" "$STAGE/etc/wharf/wharf.yaml"
install -D -m 0755 "$ROOT/deploy/docker/healthcheck.sh" "$STAGE/usr/local/bin/wharf-healthcheck"

# ---------------------------------------------------------------------------------------- ldd / dpkg
echo "+ ldd $BINARY"
LDD_OUT="$(ldd "$STAGE/usr/local/bin/wharf")"
echo "$LDD_OUT"
if echo "$LDD_OUT" | grep -q "not found"; then fail "unresolved libraries: $(echo "$LDD_OUT" | grep 'not found' | tr -s ' \t' ' ')"; fi

static_build=1
swift_static_dir=""
if swiftc_path="$(command -v swiftc 2>/dev/null)"; then
  swift_static_dir="$(dirname "$(readlink -f "$swiftc_path")")/../lib/swift_static/linux"
fi

# The package owning a library path; bookworm is /usr-merged, so try both spellings.
owner_of() {
  local path="$1" real alt out
  real="$(readlink -f "$path")"
  for candidate in "$path" "$real"; do
    case "$candidate" in
      /usr/lib/*) alt="/lib/${candidate#/usr/lib/}" ;;
      /lib/*) alt="/usr/lib/${candidate#/lib/}" ;;
      /lib64/*) alt="/usr/lib64/${candidate#/lib64/}" ;;
      *) alt="" ;;
    esac
    for c in "$candidate" $alt; do
      if out="$(dpkg -S "$c" 2>/dev/null)"; then
        echo "$out" | head -n 1 | cut -d: -f1 | cut -d, -f1
        return 0
      fi
    done
  done
  return 1
}

allowed=" $RUNTIME_PACKAGES $BASE_PACKAGES "
needed_packages=()
while read -r line; do
  # "libx.so => /path (0x…)", "/lib64/ld-linux-x86-64.so.2 (0x…)", "linux-vdso.so.1 (0x…)"
  lib="$(echo "$line" | awk '{print $1}')"
  path="$(echo "$line" | awk '$2 == "=>" {print $3; next} $1 ~ /^\// {print $1}')"
  [ -n "$path" ] || continue   # the vDSO
  if pkg="$(owner_of "$path")"; then
    needed_packages+=("$pkg")
    if [[ "$allowed" == *" $pkg "* ]]; then
      ok "$lib <- $pkg"
    else
      fail "$lib ($path) comes from $pkg, which is not in RUNTIME_PACKAGES nor in bookworm-slim"
    fi
  else
    # Not from a Debian package: must be the Swift toolchain's runtime.
    static_build=0
    base="$(basename "$path")"; archive="${base%.so*}.a"
    if [ "$MODE" = full ]; then
      fail "$lib ($path) is a toolchain library; a --static-swift-stdlib build must not need it"
    elif [ -n "$swift_static_dir" ] && [ -f "$swift_static_dir/$archive" ]; then
      ok "$lib is Swift runtime; --static-swift-stdlib links $archive instead"
    else
      fail "$lib ($path) belongs to no Debian package and has no static archive ${swift_static_dir:+in $swift_static_dir}"
    fi
  fi
done <<< "$LDD_OUT"
if [ "$static_build" = 1 ]; then ok "no Swift runtime library is loaded at run time"; fi
echo "packages the binary needs: $(printf '%s\n' "${needed_packages[@]}" | sort -u | tr '\n' ' ')"

# ----------------------------------------------------------------------------- runtime smoke check
CONFIG="$STAGE/etc/wharf/wharf.yaml"
if out="$("$STAGE/usr/local/bin/wharf" config check "$CONFIG" 2>&1)"; then
  ok "wharf config check /etc/wharf/wharf.yaml"
else
  fail "wharf config check /etc/wharf/wharf.yaml: $out"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
PORT="$(free_port)"
DATA="$STAGE/var/lib/wharf"
mkdir -p "$DATA"
# The image's CMD with the listener and the data folder moved to places a test run may use
# (flags override the file, exactly as they would in the container).
"$STAGE/usr/local/bin/wharf" serve --config "$CONFIG" --listen "127.0.0.1:$PORT" --data-dir "$DATA" \
  --upstream "http://127.0.0.1:9" >"$STAGE/wharf.log" 2>&1 &
WHARF_PID=$!
healthy=0
for _ in $(seq 1 100); do
  if WHARF_HEALTH_PORT="$PORT" "$STAGE/usr/local/bin/wharf-healthcheck" 2>/dev/null; then healthy=1; break; fi
  kill -0 "$WHARF_PID" 2>/dev/null || break
  sleep 0.1
done
if [ "$healthy" = 1 ]; then ok "HEALTHCHECK passes against the running binary"; else fail "HEALTHCHECK never passed: $(tail -n 5 "$STAGE/wharf.log")"; fi
kill -TERM "$WHARF_PID" 2>/dev/null || true
wait "$WHARF_PID" 2>/dev/null || true
WHARF_PID=""
if WHARF_HEALTH_PORT="$PORT" "$STAGE/usr/local/bin/wharf-healthcheck" 2>/dev/null; then
  fail "HEALTHCHECK passes with nothing listening"
else
  ok "HEALTHCHECK fails once the server is gone"
fi

if [ "$failures" -gt 0 ]; then
  echo "build-steps: $failures check(s) failed" >&2
  exit 1
fi
echo "build-steps ($MODE): all checks passed"
