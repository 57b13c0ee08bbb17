# Sourced by loadtest/compare: the same steady-state hit workloads measured with wrk (Debian's), the
# standard HTTP load tool, beside wharf-loadgen. A Lua script rotates through the scenario's paths.
#
#   wrk_measure SYSTEM KEY CASE C RUN PATHS_FILE [ACCEPT] → one JSON line appended to $wrk_results

wrk_results=$work/wrk.jsonl
: > "$wrk_results"

# The Lua script: paths from $WRK_PATHS, in order, wrapping; an Accept header from $WRK_ACCEPT.
cat > "$work/rotate.lua" <<'LUA'
local paths, i = {}, 0
for line in io.lines(os.getenv("WRK_PATHS")) do paths[#paths + 1] = line end
local accept = os.getenv("WRK_ACCEPT")
local headers = {}
if accept and accept ~= "" then headers["Accept"] = accept end
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end
LUA

# Latency as wrk prints it ("1.23ms", "456.00us", "1.20s") → milliseconds.
wrk_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "0" }'
}

wrk_measure() {
  local system=$1 key=$2 name=$3 c=$4 run=$5 paths=$6 acc=${7:-} out rps p50 p99 errors threads=2
  (( c < threads )) && threads=$c
  out=$(WRK_PATHS=$paths WRK_ACCEPT=$acc wrk -t "$threads" -c "$c" -d "${duration}s" --timeout 10s --latency -s "$work/rotate.lua" \
    "http://127.0.0.1:${port[$system]}" 2>&1) || true
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(wrk_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(wrk_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  # Non-2xx answers and socket errors both count as errors.
  errors=$(awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")
  echo "{\"client\":\"wrk\",\"system\":\"$system\",\"scenario\":\"warm-small\",\"key\":\"$key\",\"case\":\"$name\",\"concurrency\":$c,\"run\":$run,\"rps\":${rps:-0},\"p50_ms\":$p50,\"p99_ms\":$p99,\"errors\":$errors}" >> "$wrk_results"
}

# The medians of wharf-loadgen's and wrk's req/s per (key, c, system), as a Markdown table.
wrk_table() {
  python3 - "$results" "$wrk_results" <<'PY'
import json, statistics, sys
def load(path, client):
    rows = {}
    for line in open(path):
        r = json.loads(line)
        if r.get("scenario") != "warm-small" or r.get("client", "wharf-loadgen") != client: continue
        rps = r.get("rps") or r.get("requests_per_second") or 0
        rows.setdefault((r["key"], r["concurrency"], r["system"]), []).append((rps, r.get("p99_ms")))
    return {k: (statistics.median(v[0] for v in vs), statistics.median(v[1] or 0 for v in vs)) for k, vs in rows.items()}
lg, wrk = load(sys.argv[1], "wharf-loadgen"), load(sys.argv[2], "wrk")
print("| workload | c | system | wharf-loadgen req/s | wrk req/s | wrk p99 ms | Wharf ÷ system (wrk) |")
print("|---|---|---|---|---|---|---|")
names = {"small": "16 KiB blobs", "manifest-tag": "manifests by tag", "manifest-digest": "manifests by digest"}
for (key, c, system) in sorted(wrk, key=lambda k: (list(names).index(k[0]) if k[0] in names else 9, k[1], k[2])):
    w, p99 = wrk[(key, c, system)]
    l = lg.get((key, c, system), (0, 0))[0]
    ours = wrk.get((key, c, "wharf"), (0, 0))[0]
    ratio = f"{ours / w:.2f}×" if w and system != "wharf" else ""
    print(f"| {names.get(key, key)} | {c} | {system} | {l:,.0f} | {w:,.0f} | {p99:.2f} | {ratio} |")
PY
}
