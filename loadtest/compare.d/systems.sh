# Starting and stopping the compared systems (sourced by loadtest/compare).
# Needs: $work, $storage, $static, $lg, $wharf_bin. Every process started goes into $pids and
# is stopped by PID in stop_all (the EXIT trap).

pids=()
declare -A port pid_of

# free_port: a free loopback port (bound to 0 by wharf-loadgen, then released).
free_port() { "$lg" free-port; }

# wait_ready NAME URL PID: until URL answers 200 (30 s), or the process dies.
wait_ready() {
  local name=$1 url=$2 p=$3 i
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "$name exited during start-up; its log:" >&2
      cat "$work/$name.log" >&2 2>/dev/null || true
      return 1
    fi
    [ "$(curl -sk -o /dev/null -w '%{http_code}' "$url")" = 200 ] && return 0
    sleep 0.1
  done
  echo "$name did not answer 200 on $url within 30 s" >&2
  return 1
}

# stop PID: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
  local p=$1 i
  kill -TERM "$p" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; return 0; }; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

stop_all() {
  local p
  for p in "${pids[@]}"; do stop_pid "$p"; done
  pids=()
}

# registry_config NAME PORT ACCESSLOG(true|false) STORAGE [REMOTE_URL]
registry_config() {
  local name=$1 p=$2 accesslog=$3 root=$4 remote=${5:-}
  local disabled=true
  [ "$accesslog" = true ] && disabled=false
  cat <<YAML
version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: $disabled
storage:
  filesystem:
    rootdirectory: "$root"
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$p
  secret: "compare-$name-$RANDOM$RANDOM"
YAML
  if [ -n "$remote" ]; then
    cat <<YAML
proxy:
  remoteurl: $remote
YAML
  fi
}

# track NAME PORT PID [SCHEME]: remembers a started server (stopped by PID on exit) and waits until it answers /v2/.
track() {
  local name=$1 p=$2 child=$3 scheme=${4:-http}
  pids+=("$child")
  port[$name]=$p
  pid_of[$name]=$child
  wait_ready "$name" "$scheme://127.0.0.1:$p/v2/" "$child"
}

# start_registry NAME ACCESSLOG STORAGE [REMOTE_URL]: Distribution 2.8 (auth-less).
start_registry() {
  local name=$1 accesslog=$2 root=$3 remote=${4:-}
  local p; p=$(free_port)
  mkdir -p "$root"
  registry_config "$name" "$p" "$accesslog" "$root" "$remote" > "$work/$name.yml"
  /usr/bin/docker-registry serve "$work/$name.yml" > "$work/$name.log" 2>&1 &
  track "$name" "$p" $!
}

nginx_common() {
  local name=$1
  local user=""
  [ "$(id -u)" = 0 ] && user="user root root;"
  mkdir -p "$work/$name/tmp"
  cat <<CONF
$user
worker_processes auto;
daemon off;
master_process on;
pid $work/$name/nginx.pid;
error_log $work/$name.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path $work/$name/tmp/body;
  proxy_temp_path $work/$name/tmp/proxy;
  fastcgi_temp_path $work/$name/tmp/fastcgi;
  uwsgi_temp_path $work/$name/tmp/uwsgi;
  scgi_temp_path $work/$name/tmp/scgi;
  types { }
CONF
}

# start_nginx NAME CONF_BODY_FUNCTION [SCHEME]
start_nginx() {
  local name=$1 body=$2 scheme=${3:-http}
  local p; p=$(free_port)
  { nginx_common "$name"; "$body" "$p"; echo "}"; } > "$work/$name.conf"
  nginx -p "$work/$name" -e "$work/$name.log" -c "$work/$name.conf" > "$work/$name.out" 2>&1 &
  track "$name" "$p" $! "$scheme"
}

# nginx serving the blob files of the Distribution storage directly (sendfile): the ceiling.
nginx_static_body() {
  local p=$1 blobs="$storage/docker/registry/v2/blobs/sha256"
  cat <<CONF
  open_file_cache max=20000 inactive=120s;
  open_file_cache_valid 120s;
  server {
    listen 127.0.0.1:$p backlog=4096;
    location = /v2/ { default_type application/json; return 200 '{}'; }
    location ~ "^/v2/.+/blobs/sha256:(([0-9a-f]{2})[0-9a-f]{62})\$" {
      alias $blobs/\$2/\$1/data;
      default_type application/octet-stream;
      add_header Docker-Content-Digest sha256:\$1;
    }
    location ~ "^/v2/.+/manifests/sha256:(([0-9a-f]{2})[0-9a-f]{62})\$" {
      alias $blobs/\$2/\$1/data;
      default_type $manifest_type;
      add_header Docker-Content-Digest sha256:\$1;
    }
    location ~ ^/v2/.+/manifests/[^/]+\$ {
      root $static;
      default_type $manifest_type;
    }
  }
CONF
}

# nginx proxy_cache in front of the origin, the rpardini/docker-registry-proxy approach: blobs and
# manifests by digest cached for 60 days, manifests by tag for 10 minutes, cache key = URI,
# proxy_cache_lock so one miss goes upstream.
nginx_cache_body() {
  local p=$1
  cat <<CONF
  proxy_cache_path $work/nginx-proxy-cache/cache levels=1:2 keys_zone=registry:64m inactive=60d max_size=60g use_temp_path=off;
  upstream origin { server 127.0.0.1:${port[origin]}; keepalive 64; }
  server {
    listen 127.0.0.1:$p backlog=4096;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$http_host;
    proxy_read_timeout 900s;
    proxy_cache registry;
    proxy_cache_key \$uri;
    proxy_cache_lock on;
    proxy_cache_lock_timeout 900s;
    proxy_cache_lock_age 900s;
    proxy_ignore_headers Cache-Control Expires Set-Cookie X-Accel-Expires;
    location ~ ^/v2/.+/blobs/sha256: { proxy_pass http://origin; proxy_cache_valid 200 60d; }
    location ~ ^/v2/.+/manifests/sha256: { proxy_pass http://origin; proxy_cache_valid 200 60d; }
    location ~ ^/v2/.+/manifests/ { proxy_pass http://origin; proxy_cache_valid 200 10m; }
    location / { proxy_pass http://origin; proxy_cache off; }
  }
CONF
}

# start_wharf NAME DATA_DIR: Wharf in front of the origin. The load generator is one address standing
# for a whole site's clients, so the per-client bounds (connections, upstream look-ups) are lifted.
# It also listens with TLS ($work/tls, see compare.d/tls.sh), known as NAME-tls.
start_wharf() {
  local name=$1 data=$2
  local p tp; p=$(free_port); tp=$(free_port)
  printf 'limits:\n  connections-per-client: 1000000\n  upstream-lookups-per-client: 1000000\n  upstream-lookup-burst: 1000000\n' \
    > "$work/$name.yaml"
  if [ -n "${WHARF_MEMORY_CACHE:-}" ]; then printf 'data:\n  memory-cache: %s\n' "$WHARF_MEMORY_CACHE" >> "$work/$name.yaml"; fi
  "$wharf_bin" serve --config "$work/$name.yaml" --listen "127.0.0.1:$p" --upstream "http://127.0.0.1:${port[origin]}" --data-dir "$data" \
    --tls-listen "127.0.0.1:$tp" --tls-cert "$work/tls/cert.pem" --tls-key "$work/tls/key.pem" \
    --log-level warning --tag-ttl 600 > "$work/$name.log" 2>&1 &
  track "$name" "$p" $!
  port[$name-tls]=$tp
  pid_of[$name-tls]=${pid_of[$name]}
  wait_ready "$name-tls" "https://127.0.0.1:$tp/v2/" "${pid_of[$name]}"
}

# forget_pid PID: removes a stopped PID from $pids.
forget_pid() {
  local gone=$1 kept=() p
  for p in "${pids[@]}"; do [ "$p" = "$gone" ] || kept+=("$p"); done
  pids=("${kept[@]}")
}

# restart_wharf NAME DATA_DIR: stops Wharf NAME and starts it again on the same data (new ports).
restart_wharf() {
  local name=$1 data=$2 old=${pid_of[$1]}
  stop_pid "$old"
  forget_pid "$old"
  start_wharf "$name" "$data"
}
