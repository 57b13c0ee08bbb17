#!/usr/bin/env bash
# loadtest/cold-floor.sh: where a cold 128 MiB GET's time goes, against what verifying must cost.
#
# One cold GET at a time, in turn, each of a blob nobody has fetched: `origin` (Distribution 2.8, a
# direct GET), `nginx` (nginx proxy_cache in front of it), `nginx+sha` (the same, with `openssl dgst
# -sha256` hashing the origin's file of that blob beside it: the work Wharf adds by verifying), and
# `wharf`. curl is the client. Before each GET: the origin's file read into the page cache, `sync`, then
# 512 MiB written and deleted so the fill's page cache is memory the guest holds (see `warm_origin` and
# `quiet_disk_and_memory` in loadtest/compare). Per GET it prints the first byte, the total, and the CPU
# time all processes used meanwhile (/proc/stat, 10 ms steps), then medians per system.
#
#   loadtest/cold-floor.sh              5 rounds
#   ROUNDS=N WHARF_BIN=PATH loadtest/cold-floor.sh
#   HOOK='perf record -F 4999 -g -o /tmp/fill.data -p' loadtest/cold-floor.sh
#       runs HOOK WHARF_PID around each of Wharf's GETs (stopped with SIGINT): a profile of one fill.
set -euo pipefail
cd "$(dirname "$0")/.."
wharf=${WHARF_BIN:-.build/release/wharf}
lg=.build/release/wharf-loadgen
rounds=${ROUNDS:-5}
size=$((128 << 20))
[ -x "$lg" ] || swift build -c release --product wharf-loadgen >/dev/null
[ -x "$wharf" ] || swift build -c release --product wharf >/dev/null
work=$(mktemp -d /tmp/wharf-cold-floor.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/gen" "$work/storage" "$work/nginx/tmp"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { "$lg" free-port; }
wait_up() { for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$1/v2/" && return 0; sleep 0.1; done; echo "nothing answers on $1" >&2; return 1; }

systems="origin nginx nginx+sha wharf"
count=$((rounds * 4))
for i in $(seq 1 "$count"); do openssl rand -out "$work/gen/f.$i" "$size"; done
(cd "$work/gen" && ls | xargs openssl dgst -sha256 -r) | sed "s| \*| $work/gen/|" \
  | "$lg" layout --root "$work/storage" --repo bench/cold > "$work/digests"
mapfile -t digests < <(cut -d' ' -f1 "$work/digests")

declare -A port
port[origin]=$(free_port)
cat > "$work/origin.yml" <<YAML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: "$work/storage"}, cache: {blobdescriptor: inmemory}}
http: {addr: "127.0.0.1:${port[origin]}", secret: "cold-floor-$RANDOM"}
YAML
/usr/bin/docker-registry serve "$work/origin.yml" > "$work/origin.log" 2>&1 &
pids+=($!)

port[nginx]=$(free_port)
port[nginx+sha]=${port[nginx]}
user=""; [ "$(id -u)" = 0 ] && user="user root root;"
cat > "$work/nginx.conf" <<CONF
$user worker_processes auto; daemon off; pid $work/nginx/nginx.pid; error_log $work/nginx.log warn;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; tcp_nopush on; tcp_nodelay on; types { }
  client_body_temp_path $work/nginx/tmp/b; proxy_temp_path $work/nginx/tmp/p; fastcgi_temp_path $work/nginx/tmp/f;
  uwsgi_temp_path $work/nginx/tmp/u; scgi_temp_path $work/nginx/tmp/s;
  proxy_cache_path $work/nginx/cache levels=1:2 keys_zone=registry:64m inactive=60d max_size=60g use_temp_path=off;
  upstream origin { server 127.0.0.1:${port[origin]}; keepalive 64; }
  server {
    listen 127.0.0.1:${port[nginx]};
    proxy_http_version 1.1; proxy_set_header Connection ""; proxy_cache registry; proxy_cache_key \$uri; proxy_cache_lock on;
    location ~ ^/v2/.+/blobs/sha256: { proxy_pass http://origin; proxy_cache_valid 200 60d; }
    location / { proxy_pass http://origin; proxy_cache off; }
  }
}
CONF
nginx -p "$work/nginx" -e "$work/nginx.log" -c "$work/nginx.conf" &
pids+=($!)

port[wharf]=$(free_port)
printf 'limits:\n  connections-per-client: 1000000\n  upstream-lookups-per-client: 1000000\n  upstream-lookup-burst: 1000000\n' > "$work/wharf.yaml"
"$wharf" serve --config "$work/wharf.yaml" --listen "127.0.0.1:${port[wharf]}" --upstream "http://127.0.0.1:${port[origin]}" \
  --data-dir "$work/wharf-data" --log-level warning > "$work/wharf.log" 2>&1 &
wharf_pid=$!
pids+=($wharf_pid)
for s in origin nginx wharf; do wait_up "${port[$s]}"; done
# Wharf learns the upstream's challenge before anything is measured (a HEAD starts no fill).
curl -s -o /dev/null -I "http://127.0.0.1:${port[wharf]}/v2/bench/cold/blobs/${digests[0]}"

busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
next=0
for r in $(seq 1 "$rounds"); do
  for s in $systems; do
    d=${digests[$next]}; next=$((next + 1))
    hex=${d#sha256:}
    origin_file=$work/storage/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data
    cat "$origin_file" > /dev/null   # in the page cache (see warm_origin in loadtest/compare)
    sync
    dd if=/dev/zero of="$work/pretouch" bs=1M count=512 status=none
    rm -f "$work/pretouch"
    hook_pid="" sha_pid=""
    if [ "$s" = wharf ] && [ -n "${HOOK:-}" ]; then $HOOK "$wharf_pid" & hook_pid=$!; sleep 0.3; fi
    if [ "$s" = nginx+sha ]; then
      openssl dgst -sha256 "$origin_file" > /dev/null &
      sha_pid=$!
    fi
    before=$(busy_ticks)
    timing=$(curl -s -o /dev/null -w '%{time_starttransfer} %{time_total} %{http_code}' "http://127.0.0.1:${port[$s]}/v2/bench/cold/blobs/$d")
    [ -z "$sha_pid" ] || wait "$sha_pid"
    after=$(busy_ticks)
    if [ -n "$hook_pid" ]; then sleep 0.3; kill -INT "$hook_pid" 2>/dev/null || true; wait "$hook_pid" 2>/dev/null || true; fi
    echo "$r $s $timing $(( (after - before) * 1000 / $(getconf CLK_TCK) ))" | tee -a "$work/runs"
  done
done
echo "system: median first byte ms, total ms, CPU ms of all processes during the GET"
for s in $systems; do
  awk -v s="$s" '$2 == s {print $3 * 1000, $4 * 1000, $6}' "$work/runs" | python3 -c "
import sys, statistics as st
rows = [list(map(float, l.split())) for l in sys.stdin]
print('$s:', ', '.join('%.1f' % st.median(col) for col in zip(*rows)))"
done
