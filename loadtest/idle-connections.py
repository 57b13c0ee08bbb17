#!/usr/bin/env python3
"""Opens N keep-alive connections to HOST:PORT, sends one GET /v2/ on each (so each is a served,
idle HTTP/1.1 connection), then prints the server's RSS (VmRSS, RssAnon, RssFile of PID) and closes them.
Usage: idle-connections.py HOST PORT N PID"""
import resource, socket, sys, time

host, port, n, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1000, n + 1000))
def rss():
    f = {l.split(':')[0]: int(l.split()[1]) for l in open(f'/proc/{pid}/status') if l.split(':')[0] in ('VmRSS', 'RssAnon', 'RssFile')}
    return '  '.join(f'{k} {v/1024:.1f} MiB' for k, v in f.items())
socks = []
for i in range(n):
    s = socket.create_connection((host, port))
    s.sendall(b'GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n')
    socks.append(s)
answered = 0
for s in socks:
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = s.recv(4096)
        if not chunk: break
        data += chunk
    if data.startswith(b'HTTP/1.1 200'): answered += 1
time.sleep(1)  # let the server settle (measurement only, not synchronisation)
print(f'{n} connections open, {answered} answered 200: {rss()}')
for s in socks: s.close()
