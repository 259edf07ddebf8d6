"""hold.py HOST PORT N PATH SECONDS: opens N keep-alive HTTP/1.1
connections, makes one GET PATH on each (with the bearer token in
BENCH_TOKEN, if set; each must answer 200) and keeps
them open and idle; prints "open N" once they all are, then waits until
stdin closes or SECONDS pass, and closes them. For the RSS of a server
holding many idle keep-alive connections."""
import os
import resource
import socket
import sys
import select
import time


def main():
    host, port, n, path, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))
    deadline = time.monotonic() + seconds
    token = os.environ.get("BENCH_TOKEN")
    auth = "Authorization: Bearer %s\r\n" % token if token else ""
    request = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n" % (path, host, port, auth)).encode()
    conns = []
    for i in range(n):
        if time.monotonic() > deadline:
            sys.exit("hold.py: ran out of time after %d connections" % i)
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                sys.exit("hold.py: connection %d closed before the reply" % i)
            reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            sys.exit("hold.py: connection %d: %r" % (i, head.split(b"\r\n")[0]))
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(body) < length:
            chunk = s.recv(4096)
            if not chunk:
                sys.exit("hold.py: connection %d closed in the body" % i)
            body += chunk
        conns.append(s)
    print("open %d" % len(conns), flush=True)
    select.select([sys.stdin], [], [], max(0.0, deadline - time.monotonic()))
    # Were any closed by the server meanwhile? A readable idle socket is one.
    readable, _, _ = select.select(conns, [], [], 0)
    print("closed_by_server %d" % len(readable), flush=True)
    for s in conns:
        s.close()


main()
