#!/usr/bin/env python3
"""How the operator API answers while idle and slow connections are open (a benchmark, not a test).

Starts build/coordinator/kforge-coordinator on a temporary data directory, opens IDLE idle TCP
connections and SLOW connections that trickle a request head a byte at a time, then times
GET /api/v1/health requests (a fresh connection each, as the CLI makes them) and a run of
keep-alive requests on one connection.

    python3 bench/api_connections.py [--idle 300] [--slow 50] [--requests 50] [--build build]
"""

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=300)
    ap.add_argument("--slow", type=int, default=50)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--keepalive", type=int, default=2000)
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="kforge-bench-api-")
    data = os.path.join(tmp, "data")
    proc = subprocess.Popen([os.path.join(args.build, "coordinator", "kforge-coordinator"), "--data", data,
                             "--listen", "tcp://127.0.0.1:*", "--http", "127.0.0.1:0", "--log-level", "warn"],
                            stdout=subprocess.PIPE, text=True)
    url = None
    for line in proc.stdout:
        if line.startswith("api "):
            url = line.split()[1]
            break
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    port = int(url.rsplit(":", 1)[1])
    token = open(os.path.join(data, "api.token")).read().strip()
    headers = {"Authorization": "Bearer " + token}
    try:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(args.idle)]
        head = f"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(args.slow)]
        stop = threading.Event()

        def trickle():
            at = 0
            while not stop.is_set() and at < len(head) - 4:
                for s in slow:
                    try:
                        s.send(head[at].encode())
                    except OSError:
                        pass
                at += 1
                stop.wait(0.5)

        threading.Thread(target=trickle, daemon=True).start()
        time.sleep(0.5)  # let the connections be accepted (a benchmark may sleep)
        times = []
        for _ in range(args.requests):
            t0 = time.monotonic()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("GET", "/api/v1/health", headers=headers)
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
            c.close()
            times.append(time.monotonic() - t0)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        t0 = time.monotonic()
        for _ in range(args.keepalive):
            c.request("GET", "/api/v1/health", headers=headers)
            r = c.getresponse()
            r.read()
        ka = time.monotonic() - t0
        stop.set()
        times.sort()
        print(f"{args.idle} idle + {args.slow} slow connections open; {args.requests} requests on fresh connections: "
              f"median {statistics.median(times) * 1000:.2f} ms, max {times[-1] * 1000:.2f} ms")
        print(f"{args.keepalive} keep-alive requests on one connection: {ka:.2f} s, "
              f"{args.keepalive / ka:.0f} requests/s")
        for s in idle + slow:
            s.close()
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
