"""Floors for bench/serve.ts, with no Node on the client side (Python's blocking sockets, loopback).

  python3 bench/serve_floor.py kernel <bytes> <runs>
      a forked Python server reads each <bytes>-byte message to its end and answers 2 bytes: what the
      kernel alone charges to move the request over loopback, beneath any server or client library.
  python3 bench/serve_floor.py v2 <port> <model> <raw pixels file> <side> <runs> [<hold ms>]
      binary-tensor infer requests (UINT8 [side, side, 3]) to a daemon, one at a time on one kept-alive
      connection: the wall time per request and the wall time less the run's own `run_ms`, as an
      independent client sees the daemon. With <hold ms>, an x-hold-ms header (for the bare fastify
      floor of bench/serve-probe.ts, which answers after that long and reports it as its run_ms).
Prints one JSON document: p50 and p99 in ms of each series, the first tenth of the runs left out (warm-up).
"""
import json
import os
import socket
import sys
import time


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(-(-p * len(s) // 100)) - 1))]


def summary(xs):
    xs = xs[len(xs) // 10 :]
    return {"p50": round(pct(xs, 50), 3), "p99": round(pct(xs, 99), 3), "n": len(xs)}


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def kernel(n, runs):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = ls.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        c, _ = ls.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = memoryview(bytearray(n))
        while True:
            got = 0
            while got < n:
                k = c.recv_into(buf[got:], n - got)
                if k == 0:
                    os._exit(0)
                got += k
            c.sendall(b"ok")
    s = connect(port)
    data = os.urandom(n)
    wall = []
    for _ in range(runs):
        t = time.perf_counter()
        s.sendall(data)
        got = 0
        while got < 2:
            got += len(s.recv(2 - got))
        wall.append((time.perf_counter() - t) * 1000)
    s.close()
    os.waitpid(pid, 0)
    return {"wall": summary(wall)}


def v2(port, model, pixels, side, runs, hold=None):
    px = open(pixels, "rb").read()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [side, side, 3],
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": len(px)},
                }
            ]
        }
    ).encode()
    body = head + px
    req = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-type: application/octet-stream\r\ninference-header-content-length: {len(head)}\r\n"
        + (f"x-hold-ms: {hold}\r\n" if hold else "")
        + f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    s = connect(port)
    wall, over = [], []
    for _ in range(runs):
        t = time.perf_counter()
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head_bytes, rest = buf.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin1").split("\r\n")
        length = int(next(v for k, _, v in (l.partition(":") for l in lines[1:]) if k.lower() == "content-length"))
        while len(rest) < length:
            rest += s.recv(65536)
        ms = (time.perf_counter() - t) * 1000
        if not lines[0].startswith("HTTP/1.1 200"):
            raise SystemExit(f"infer answered {lines[0]}: {rest[:200]!r}")
        wall.append(ms)
        over.append(ms - json.loads(rest)["parameters"]["run_ms"])
    s.close()
    return {"wall": summary(wall), "wallLessRun": summary(over)}


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "kernel":
        out = kernel(int(a[1]), int(a[2]))
    else:
        out = v2(int(a[1]), a[2], a[3], int(a[4]), int(a[5]), a[6] if len(a) > 6 else None)
    print(json.dumps(out))
