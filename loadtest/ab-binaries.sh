#!/usr/bin/env bash
# loadtest/ab-binaries.sh: two wharf binaries measured in turn (A, B, A, B, …) on the same upstream, so
# slow drift of a shared machine hits both alike. Upstream: wharf-fixture-upstream (Distribution-like,
# token auth). Per-client limits are lifted (one address stands for a site). Prints one JSON line per
# run (wharf-loadgen's, labelled side=a|b), then medians.
#
#   loadtest/ab-binaries.sh A_BINARY B_BINARY hits    16 KiB cache hits, c=64, 5 s per run
#   loadtest/ab-binaries.sh A_BINARY B_BINARY cold64  64 concurrent cold fills of 32 MiB (fresh cache each run)
#   loadtest/ab-binaries.sh A_BINARY B_BINARY cold1   one cold 128 MiB fill (fresh cache each run)
#   loadtest/ab-binaries.sh A_BINARY B_BINARY herd    64 concurrent GETs of one cold 128 MiB blob (fresh cache each run)
#   ROUNDS=N sets the rounds (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 mode=${3:-hits} rounds=${ROUNDS:-5}
swift build -c release --product wharf-loadgen >/dev/null
swift build -c release --product wharf-fixture-upstream >/dev/null
bin=.build/release
work=$(mktemp -d /tmp/wharf-ab.XXXXXX)
pids=()
declare -A port pid
# Every process started (the upstream and each side's wharf) is stopped by PID on exit, also after a failure.
cleanup() { for p in "${pids[@]}" "${pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
case $mode in
  hits) count=200 size=16384 ;;
  cold64) count=64 size=33554432 ;;
  cold1|herd) count=1 size=134217728 ;;
  *) echo "unknown mode: $mode" >&2; exit 2 ;;
esac
"$bin/wharf-fixture-upstream" "$work/up" $(for _ in $(seq 1 "$count"); do printf '%s ' "$size"; done) > "$work/up.json" &
pids+=($!)
for _ in $(seq 1 600); do [ -s "$work/up.json" ] && break; sleep 0.1; done
registry=$(python3 -c "import json; print(json.load(open('$work/up.json'))['registry'])")
python3 -c "import json; d=json.load(open('$work/up.json')); print('\n'.join('/v2/bench/blobs/blobs/'+b['digest'] for b in d['blobs']))" > "$work/paths"
printf 'limits:\n  connections-per-client: 1000000\n  upstream-lookups-per-client: 1000000\n  upstream-lookup-burst: 1000000\n' > "$work/limits.yaml"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# start SIDE BINARY: a wharf on a fresh data folder; sets port[SIDE] and pid[SIDE].
start() {
  rm -rf "$work/data-$1"
  port[$1]=$(free_port)
  "$2" serve --config "$work/limits.yaml" --listen "127.0.0.1:${port[$1]}" --upstream "$registry" --data-dir "$work/data-$1" --log-level warning &
  pid[$1]=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:${port[$1]}/v2/" >/dev/null && break; sleep 0.1; done
  # The upstream token and challenge are learned before anything is measured (a HEAD starts no fill).
  curl -s -o /dev/null -I "http://127.0.0.1:${port[$1]}$(head -1 "$work/paths")"
}
stop() { kill -TERM "${pid[$1]}"; wait "${pid[$1]}" || true; }
run() {
  local c=$count; [ "$mode" = hits ] && c=64
  if [ "$mode" = herd ]; then
    "$bin/wharf-loadgen" run --url "http://127.0.0.1:${port[$1]}" --paths-file "$work/paths" --order sequential --requests 64 -c 64 \
      --server-pid "${pid[$1]}" --label "side=$1"
    return
  fi
  if [ "$mode" = hits ]; then
    "$bin/wharf-loadgen" run --url "http://127.0.0.1:${port[$1]}" --paths-file "$work/paths" -c 64 --duration 5 --server-pid "${pid[$1]}" --label "side=$1"
  else
    "$bin/wharf-loadgen" run --url "http://127.0.0.1:${port[$1]}" --paths-file "$work/paths" --order sequential --requests "$count" -c "$c" \
      --server-pid "${pid[$1]}" --label "side=$1"
  fi
}
if [ "$mode" = hits ]; then
  for side in a b; do
    bin_of=$a; [ "$side" = b ] && bin_of=$b
    start "$side" "$bin_of"
    "$bin/wharf-loadgen" run --url "http://127.0.0.1:${port[$side]}" --paths-file "$work/paths" --order sequential --requests "$count" -c 4 >/dev/null
  done
fi
for r in $(seq 1 "$rounds"); do
  order="a b"; [ $((r % 2)) = 0 ] && order="b a"
  for side in $order; do
    bin_of=$a; [ "$side" = b ] && bin_of=$b
    [ "$mode" = hits ] || start "$side" "$bin_of"
    run "$side" | tee -a "$work/runs.jsonl"
    [ "$mode" = hits ] || stop "$side"
  done
done
python3 - "$work/runs.jsonl" <<'PY'
import json, statistics as st, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
for side in "ab":
    rs = [r for r in runs if r["side"] == side]
    print(f"{side}: median req/s {st.median(r['rps'] for r in rs):.0f}, wall s {st.median(r['seconds'] for r in rs):.3f}, "
          f"server CPU µs/request {st.median(r['server_cpu_s'] / r['requests'] * 1e6 for r in rs):.1f}, "
          f"CPU-s/GiB {st.median(r['server_cpu_s_per_gib'] for r in rs):.2f}, first byte p50 ms {st.median(r['ttfb_p50_ms'] for r in rs):.1f}")
PY
