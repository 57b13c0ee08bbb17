# Sourced by loadtest/compare: hits over TLS, nginx (static files) and Wharf with the same
# certificate (ECDSA P-256, made here), measured with wrk (wharf-loadgen speaks plain HTTP only).
#
#   tls_make_certificate                      → $work/tls/{cert,key}.pem
#   tls_measure SYSTEM KEY CASE C RUN PATHS   → one JSON line appended to $tls_results

tls_results=$work/tls.jsonl
: > "$tls_results"

tls_make_certificate() {
  mkdir -p "$work/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" 2>/dev/null
  chmod 644 "$work/tls/key.pem"   # nginx workers may run as another user
}

# nginx serving the same files as nginx-static, over TLS (the protocol and cipher wrk and the
# server agree on are recorded with each measurement).
nginx_static_tls_body() {
  nginx_static_body "$1" | sed "s|listen 127.0.0.1:$1 backlog=4096;|listen 127.0.0.1:$1 ssl backlog=4096;\n    ssl_certificate $work/tls/cert.pem;\n    ssl_certificate_key $work/tls/key.pem;\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:tls:10m;|"
}

# The negotiated "PROTOCOL CIPHERSUITE" of a default OpenSSL client (as wrk is) with SYSTEM.
tls_negotiated() {
  openssl s_client -connect "127.0.0.1:${port[$1]}" -brief </dev/null 2>&1 \
    | awk -F': ' '/^Protocol version/ {p = $2} /^Ciphersuite/ {c = $2} END {print p " " c}'
}

# CPU seconds (utime + stime) of PID and its child processes (nginx's workers).
tls_cpu_seconds() {
  local p ticks=0 hz
  hz=$(getconf CLK_TCK)
  for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    [ -r "/proc/$p/stat" ] || continue
    ticks=$((ticks + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
  done
  awk -v t="$ticks" -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}'
}

# wrk's "12.34GB read" → bytes (wrk's units are binary).
tls_bytes() {
  awk -v v="$1" 'BEGIN {
    m = 1; if (v ~ /KB$/) m = 1024; else if (v ~ /MB$/) m = 1048576; else if (v ~ /GB$/) m = 1073741824; else if (v ~ /TB$/) m = 1099511627776
    sub(/[KMGT]?B$/, "", v); printf "%.0f", v * m }'
}

tls_measure() {
  local system=$1 key=$2 name=$3 c=$4 run=$5 paths=$6 out rps p50 p99 errors bytes cpu0 cpu1 cpu threads=2 negotiated
  (( c < threads )) && threads=$c
  negotiated=$(tls_negotiated "$system")
  cpu0=$(tls_cpu_seconds "${pid_of[$system]}")
  out=$(WRK_PATHS=$paths WRK_ACCEPT= wrk -t "$threads" -c "$c" -d "${duration}s" --timeout 10s --latency -s "$work/rotate.lua" \
    "https://127.0.0.1:${port[$system]}" 2>&1) || true
  cpu1=$(tls_cpu_seconds "${pid_of[$system]}")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(wrk_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(wrk_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  bytes=$(tls_bytes "$(awk '/requests in/ {print $(NF - 1)}' <<<"$out")")
  errors=$(awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")
  cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.2f", b - a}')
  echo "{\"client\":\"wrk\",\"system\":\"$system\",\"scenario\":\"tls\",\"key\":\"$key\",\"case\":\"$name\",\"concurrency\":$c,\"run\":$run,\"rps\":${rps:-0},\"bytes\":${bytes:-0},\"seconds\":$duration,\"server_cpu_s\":$cpu,\"p50_ms\":$p50,\"p99_ms\":$p99,\"errors\":$errors,\"tls\":\"$negotiated\"}" >> "$tls_results"
}

# Medians per (key, c, system) as a Markdown table: req/s, MB/s, CPU-s/GiB, and Wharf ÷ nginx.
tls_table() {
  python3 - "$tls_results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault((r["key"], r["concurrency"], r["system"]), []).append(r)
def med(rs, f): return statistics.median(f(r) for r in rs)
names = {"small": "16 KiB blobs", "big": "big blob"}
print("| workload | c | system | protocol, cipher | req/s | MB/s | CPU-s/GiB | p99 ms | Wharf ÷ nginx (req/s, MB/s) | Wharf ÷ nginx (CPU-s/GiB) |")
print("|---|---|---|---|---|---|---|---|---|---|")
stats = {}
for k, rs in rows.items():
    mbs = med(rs, lambda r: r["bytes"] / r["seconds"] / 1e6)
    gib = med(rs, lambda r: r["server_cpu_s"] / (r["bytes"] / 2**30) if r["bytes"] else 0)
    stats[k] = (med(rs, lambda r: r["rps"]), mbs, gib, med(rs, lambda r: r["p99_ms"]), rs[0]["tls"], rs[0]["case"])
for k in sorted(stats, key=lambda k: (list(names).index(k[0]) if k[0] in names else 9, k[1], k[2])):
    rps, mbs, gib, p99, tls, case = stats[k]
    ratio = cpu = ""
    if k[2] == "wharf-tls" and (k[0], k[1], "nginx-static-tls") in stats:
        n = stats[(k[0], k[1], "nginx-static-tls")]
        ratio = f"{rps / n[0]:.2f}×, {mbs / n[1]:.2f}×" if n[0] and n[1] else ""
        cpu = f"{gib / n[2]:.2f}×" if n[2] else ""
    print(f"| {case} | {k[1]} | {k[2]} | {tls} | {rps:,.0f} | {mbs:,.0f} | {gib:.2f} | {p99:.2f} | {ratio} | {cpu} |")
# Issue #16's TLS targets.
def ratio(key, c, i):
    w, n = stats.get((key, c, "wharf-tls")), stats.get((key, c, "nginx-static-tls"))
    return w[i] / n[i] if w and n and n[i] else None
def verdict(ok): return "not measured" if ok is None else ("met" if ok else "**not met**")
print()
print("| target (#16) | measured | met |")
print("|---|---|---|")
for c in sorted({k[1] for k in stats if k[0] == "small"}):
    r = ratio("small", c, 0)
    print(f"| 16 KiB over TLS, c={c}: req/s ≥ 1.0× nginx | " + (f"{r:.2f}×" if r else "–") + f" | {verdict(None if r is None else r >= 1.0)} |")
for c in sorted({k[1] for k in stats if k[0] == "big"}):
    r, cpu = ratio("big", c, 1), ratio("big", c, 2)
    print(f"| big blob over TLS, c={c}: MB/s ≥ 1.0× nginx | " + (f"{r:.2f}×" if r else "–") + f" | {verdict(None if r is None else r >= 1.0)} |")
    print(f"| big blob over TLS, c={c}: CPU-s/GiB ≤ 1.2× nginx's | " + (f"{cpu:.2f}×" if cpu else "–") + f" | {verdict(None if cpu is None else cpu <= 1.2)} |")
PY
}
