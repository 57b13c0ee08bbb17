#!/usr/bin/env bash
# scale.sh: issue #16 item 3, "ten million blobs", end to end on a generated data folder.
#   loadtest/scale.sh [ENTRIES]   (default 10000000; needs release builds of wharf, wharf-index-bench, wharf-loadgen)
# 1. wharf-index-bench generate/measure: hit-path lookup p50/p99/p99.9, LRU victim scan, index size.
# 2. restart to first answer: wharf serve on the folder, time to /v2/ and to a cached blob HEAD (a real file).
# 5. RSS while serving: wharf-loadgen GETs of the real files and of index records without a file.
# 6. RSS of 10,000 idle keep-alive connections.
# The synthetic records have no file: the server's background index <-> disk check drops them, so each
# server run gets a fresh copy of the generated index (cp). WORK (default /tmp/wharf-scale) is removed at the end
# unless KEEP=1.
set -euo pipefail
entries=${1:-10000000}
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=$repo/.build/release
work=${WORK:-/tmp/wharf-scale}
port=${PORT:-5791}
gen=$work/generated
run=$work/run
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; [ "${KEEP:-0}" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work"
echo "load before: $(uptime)"
[ -f "$gen/scale-bench.json" ] || "$bin/wharf-index-bench" generate "$gen" --entries "$entries" 2>/dev/null
"$bin/wharf-index-bench" measure "$gen"

ms() { date +%s%N; }
start_server() {  # $@: extra serve flags; sets pid, t_v2_ms, t_hit_ms
  rm -rf "$run"; cp -a "$gen" "$run"; sync  # no dirty pages of the copy left for the server's first commit to flush
  local hit; hit=$(head -1 "$gen/scale-hits.txt")
  local t0; t0=$(ms)
  "$bin/wharf" serve --data-dir "$run" --listen "127.0.0.1:$port" --upstream http://127.0.0.1:9 --log-level error "$@" 2>"$work/serve.log" &
  pid=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$port/v2/"; do sleep 0.005; done
  t_v2_ms=$(( ($(ms) - t0) / 1000000 ))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -I "http://127.0.0.1:$port$hit")" = 200 ]; do sleep 0.005; done
  t_hit_ms=$(( ($(ms) - t0) / 1000000 ))
}
rss() { awk '/^VmRSS|^RssAnon|^RssFile/ {printf "%s %.1f MiB  ", $1, $2/1024}' "/proc/$1/status"; }
stop_server() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

# 2 and 5
start_server
echo "restart to first answer: /v2/ ${t_v2_ms} ms, cached blob HEAD 200 ${t_hit_ms} ms"
echo "RSS idle after start: $(rss "$pid")"
shuf -n 20000 "$gen/scale-lookups.txt" > "$work/mixed.txt"; for _ in $(seq 50); do cat "$gen/scale-hits.txt"; done >> "$work/mixed.txt"
"$bin/wharf-loadgen" run --url "http://127.0.0.1:$port" --paths-file "$gen/scale-hits.txt" -c 64 --duration 5 --server-pid "$pid" | tee "$work/hits.json"
"$bin/wharf-loadgen" run --url "http://127.0.0.1:$port" --paths-file "$work/mixed.txt" -c 64 --duration 5 --server-pid "$pid" \
  --expect-status 200 --expect-status 502 --expect-status 503 --expect-status 504 --expect-status 404 | tee "$work/mixed.json"
echo "RSS after serving: $(rss "$pid")"
stop_server

# 6
printf 'limits:\n  connections-per-client: 1000000\n  connections: 20000\n' > "$work/conn.yaml"
ulimit -n "$(ulimit -Hn)"  # 10,000 connections + files: needs a hard limit above ~11,000
start_server --config "$work/conn.yaml"
before=$(rss "$pid")
python3 "$repo/loadtest/idle-connections.py" 127.0.0.1 "$port" 10000 "$pid"
echo "10,000 idle connections: before: $before"
stop_server
echo "load after: $(uptime)"
