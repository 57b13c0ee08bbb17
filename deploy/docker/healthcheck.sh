#!/usr/bin/env bash
# Container health check for Wharf: GET /_ping must answer 200 ({"Error":"","Healthy":true}).
# Needs only bash (its /dev/tcp), head and grep, all present in debian:bookworm-slim.
# WHARF_HEALTH_HOST (default 127.0.0.1) and WHARF_HEALTH_PORT (default 5000) select the listener.
set -euo pipefail
host="${WHARF_HEALTH_HOST:-127.0.0.1}"
port="${WHARF_HEALTH_PORT:-5000}"
exec 3<>"/dev/tcp/${host}/${port}"
printf 'GET /_ping HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
status_line="$(timeout 4 head -n 1 <&3 || true)"
exec 3<&- 3>&-
case "$status_line" in
  "HTTP/1."?" 200"*) exit 0 ;;
  *) echo "wharf /_ping: ${status_line:-no answer}" >&2; exit 1 ;;
esac
