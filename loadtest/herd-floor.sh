#!/usr/bin/env bash
# loadtest/herd-floor.sh: what delivering a herd costs once the blob is cached, Wharf against nginx on the
# very same file.
#
# One 128 MiB blob from wharf-fixture-upstream is filled into Wharf once. nginx (sendfile, tcp_nopush,
# sendfile_max_chunk at its default: `compare`'s nginx static settings) then serves Wharf's own cached
# file through a hard link, so both servers send the same page-cache pages. Rounds alternate (wharf,
# nginx, nginx, wharf, …) so a shared machine's drift hits both alike; each round is 64 concurrent GETs
# of the blob (`compare`'s herd-floor row). Per round: wall time, the server's CPU (nginx: its workers),
# and the client's user and system CPU (`/usr/bin/time`), then medians per server. No cold herd can finish
# faster than the same system delivering a blob it already has, so this is the herd's floor.
#
#   loadtest/herd-floor.sh                 8 rounds per server
#   ROUNDS=N WHARF_BIN=PATH loadtest/herd-floor.sh
#   HOOK='perf record -F 2000 -g -o /tmp/herd.data -p' loadtest/herd-floor.sh
#       runs HOOK PIDS around each server's first round (stopped with SIGINT): the two profiles.
set -euo pipefail
cd "$(dirname "$0")/.."
wharf=${WHARF_BIN:-.build/release/wharf}
bin=.build/release
rounds=${ROUNDS:-8}
[ -x "$bin/wharf-loadgen" ] || swift build -c release --product wharf-loadgen >/dev/null
[ -x "$bin/wharf-fixture-upstream" ] || swift build -c release --product wharf-fixture-upstream >/dev/null
[ -x "$wharf" ] || swift build -c release --product wharf >/dev/null
work=$(mktemp -d /tmp/wharf-herd-floor.XXXXXX)
chmod 755 "$work"
lg=$bin/wharf-loadgen
# free_port, track (waits for /v2/), start_nginx with compare's common nginx settings, stop_all.
source loadtest/compare.d/systems.sh
cleanup() { stop_all; rm -rf "$work"; }
trap cleanup EXIT

"$bin/wharf-fixture-upstream" "$work/up" $((128 << 20)) > "$work/up.json" &
pids+=($!)
for _ in $(seq 1 600); do [ -s "$work/up.json" ] && break; sleep 0.1; done
registry=$(python3 -c "import json; print(json.load(open('$work/up.json'))['registry'])")
digest=$(python3 -c "import json; print(json.load(open('$work/up.json'))['blobs'][0]['digest'])")
path="/v2/bench/blobs/blobs/$digest"
echo "$path" > "$work/paths"

printf 'limits:\n  connections-per-client: 1000000\n' > "$work/wharf.yaml"
wport=$(free_port)
"$wharf" serve --config "$work/wharf.yaml" --listen "127.0.0.1:$wport" --upstream "$registry" --data-dir "$work/data" \
  --log-level warning > "$work/wharf.log" 2>&1 &
track wharf "$wport" $!
wpid=${pid_of[wharf]}
curl -sf -o /dev/null "http://127.0.0.1:$wport$path"
file="$work/data/blobs/sha256/${digest:7:2}/${digest#sha256:}"
for _ in $(seq 1 100); do [ -f "$file" ] && break; sleep 0.1; done
mkdir -p "$work/root/v2/bench/blobs/blobs"
ln "$file" "$work/root$path"

# nginx serving Wharf's cached file (hard link) with compare's static settings (nginx_common).
herd_nginx_body() {
  cat <<CONF
  open_file_cache max=20000 inactive=120s;
  server {
    listen 127.0.0.1:$1 backlog=4096;
    location = /v2/ { default_type application/json; return 200 '{}'; }
    location / { root $work/root; default_type application/octet-stream; }
  }
CONF
}
start_nginx nginx herd_nginx_body
nport=${port[nginx]}
npid=${pid_of[nginx]}
[ "$(curl -sf "http://127.0.0.1:$nport$path" | sha256sum | cut -d' ' -f1)" = "${digest#sha256:}" ]

# herd SIDE PORT PID_ARGS…: one round of 64 concurrent GETs; appends a JSON line to runs.jsonl.
herd() {
  local side=$1 port=$2; shift 2
  local hook_pid=""
  if [ -n "${HOOK:-}" ] && [ ! -e "$work/hooked-$side" ]; then
    touch "$work/hooked-$side"
    local targets
    if [ "$side" = nginx ]; then targets=$(pgrep -d, -P "$npid"); else targets=$wpid; fi
    $HOOK "$targets" > "$work/hook-$side.out" 2>&1 &
    hook_pid=$!
    sleep 0.5
  fi
  /usr/bin/time -f '%U %S' -o "$work/time" "$bin/wharf-loadgen" run --url "http://127.0.0.1:$port" --paths-file "$work/paths" \
    --requests 64 -c 64 --fail-on-error "$@" --label "side=$side" > "$work/line"
  if [ -n "$hook_pid" ]; then kill -INT "$hook_pid" 2>/dev/null || true; wait "$hook_pid" 2>/dev/null || true; fi
  read -r cu cs < "$work/time"
  python3 -c "
import json, sys
d = json.load(open('$work/line')); d['client_user_s'] = $cu; d['client_sys_s'] = $cs
print(json.dumps(d))" | tee -a "$work/runs.jsonl" | python3 -c "
import json, sys
d = json.loads(sys.stdin.read())
print(f\"{d['side']:6} wall {d['seconds']:.3f} s, server CPU {d['server_cpu_s']:.2f} s, client CPU {d['client_user_s']:.2f} user + {d['client_sys_s']:.2f} sys\")"
}
for r in $(seq 1 "$rounds"); do
  order="wharf nginx"; [ $((r % 2)) = 0 ] && order="nginx wharf"
  for side in $order; do
    if [ "$side" = wharf ]; then herd wharf "$wport" --server-pid "$wpid"
    else herd nginx "$nport" --server-pid "$npid" --server-children; fi
  done
done
python3 - "$work/runs.jsonl" <<'PY'
import json, statistics as st, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
for side in ("wharf", "nginx"):
    rs = [r for r in runs if r["side"] == side]
    print(f"{side}: median wall {st.median(r['seconds'] for r in rs):.3f} s "
          f"(min {min(r['seconds'] for r in rs):.3f}, max {max(r['seconds'] for r in rs):.3f}), "
          f"server CPU {st.median(r['server_cpu_s'] for r in rs):.2f} s, "
          f"client CPU {st.median(r['client_user_s'] + r['client_sys_s'] for r in rs):.2f} s")
PY
if [ -n "${HOOK:-}" ]; then cat "$work"/hook-*.out; fi
