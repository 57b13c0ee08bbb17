#!/usr/bin/env bash
# Core numbers for the pull-through path, on loopback, release build:
#   - direct GET of a 128 MiB blob from the upstream (Distribution 2.8 with token auth)
#   - cold GET of a same-size blob through Wharf (fill: upstream → client + disk + SHA-256)
#   - warm GET of that blob through Wharf (sendfile), best of 5
#   - herd: 32 concurrent cold GETs of one 128 MiB blob; upstream GETs counted from the access log
# Usage: loadtest/core-bench.sh [SIZE_BYTES]   (default 134217728)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-134217728}
./scripts/install-deps.sh --test
command -v curl >/dev/null || apt-get install -y -qq curl >/dev/null
swift build -c release --product wharf >/dev/null
swift build -c release --product wharf-fixture-upstream >/dev/null
bin=.build/release
work=$(mktemp -d /tmp/wharf-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$bin/wharf-fixture-upstream" "$work/up" "$size" "$size" "$size" > "$work/up.json" &
pids+=($!)
for _ in $(seq 1 300); do [ -s "$work/up.json" ] && break; sleep 0.1; done
j() { python3 -c "import json,sys; d=json.load(open('$work/up.json')); print(eval(sys.argv[1]))" "$1"; }
registry=$(j 'd["registry"]'); realm=$(j 'd["realm"]'); service=$(j 'd["service"]'); log=$(j 'd["log"]')
d1=$(j 'd["blobs"][0]["digest"]'); d2=$(j 'd["blobs"][1]["digest"]'); d3=$(j 'd["blobs"][2]["digest"]')
token=$(curl -s "$realm?service=$service&scope=repository:bench/blobs:pull" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/wharf" serve --listen "127.0.0.1:$port" --upstream "$registry" --data-dir "$work/data" --log-level warning &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
wharf="http://127.0.0.1:$port/v2/bench/blobs/blobs"
# Warm Wharf's upstream token (a HEAD miss asks the upstream, starts no fill) so the cold GET measures the fill.
curl -s -o /dev/null -I "$wharf/$d1"
fmt='%{time_starttransfer} %{time_total} %{speed_download} %{size_download}'
mb() { python3 -c "print(f'{$1/1e6:.0f}')"; }
row() { read -r ttfb total speed bytes <<<"$2"; printf '| %s | %s | %.1f | %.3f | %s |\n' "$1" "$bytes" "$(python3 -c "print($ttfb*1000)")" "$total" "$(mb "$speed")"; }

echo "| what | bytes | first byte (ms) | total (s) | MB/s |"
echo "| --- | --- | --- | --- | --- |"
row "direct GET from upstream" "$(curl -s -o /dev/null -w "$fmt" -H "Authorization: Bearer $token" "$registry/v2/bench/blobs/blobs/$d1")"
row "cold GET through Wharf (fill)" "$(curl -s -o /dev/null -w "$fmt" "$wharf/$d2")"
best=""
for i in 1 2 3 4 5; do
  r=$(curl -s -o /dev/null -w "$fmt" "$wharf/$d2")
  s=$(echo "$r" | awk '{print $3}')
  if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if $s > $(echo "$best" | awk '{print $3}') else 1)"; then best=$r; fi
done
row "warm GET through Wharf (sendfile, best of 5)" "$best"

start=$(date +%s.%N)
herd=()
for i in $(seq 1 32); do curl -s -o /dev/null -w '%{http_code} %{size_download}' "$wharf/$d3" > "$work/herd.$i" & herd+=($!); done
for p in "${herd[@]}"; do wait "$p" || true; done
end=$(date +%s.%N)
ok=0; for i in $(seq 1 32); do [ "$(cat "$work/herd.$i")" = "200 $size" ] && ok=$((ok+1)); done
sleep 0.3
gets=$(grep -c "\"GET /v2/bench/blobs/blobs/$d3 " "$log" || true)
echo
echo "herd: 32 concurrent cold GETs of one $(mb "$size") MB blob: $ok/32 complete 200 responses (content is hash-checked by the test suite), upstream GETs for it: $gets, total $(python3 -c "print(f'{$end-$start:.3f}')") s"
