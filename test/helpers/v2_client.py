"""An Open Inference Protocol (KServe V2 REST) client written from the published texts only
(kserve required_api.md, Triton's binary tensor data extension), sharing no code with xpkg: raw
HTTP/1.1 over a socket, so that framing cases (keep-alive, pipelining, chunked bodies,
100-continue, a truncated body) can be sent as they are. Python 3 standard library only.

As a library: V2(url) and its helpers. As a command: `python3 v2_client.py URL CHECK...` runs the
named checks (test/helpers/v2_checks.py) and prints one JSON object per line:
{"check", "ok", "got"}.
"""

import json
import socket
import struct
import zlib

# Tensor Data Types (required_api.md): the size of each element, in bytes; BYTES is variable
SIZES = {
    "BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2,
    "INT32": 4, "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8,
}
PACK = {
    "BOOL": "?", "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q", "INT8": "b",
    "INT16": "h", "INT32": "i", "INT64": "q", "FP16": "e", "FP32": "f", "FP64": "d",
}


def to_bytes(datatype, values):
    """Binary tensor data: little-endian, row major, no padding; BYTES as 4-byte LE length + bytes."""
    if datatype == "BYTES":
        out = b""
        for v in values:
            b = v.encode() if isinstance(v, str) else bytes(v)
            out += struct.pack("<I", len(b)) + b
        return out
    return struct.pack("<%d%s" % (len(values), PACK[datatype]), *values)


def from_bytes(datatype, raw):
    if datatype == "BYTES":
        out, o = [], 0
        while o < len(raw):
            (n,) = struct.unpack_from("<I", raw, o)
            out.append(raw[o + 4:o + 4 + n])
            o += 4 + n
        return out
    n = len(raw) // SIZES[datatype]
    return list(struct.unpack("<%d%s" % (n, PACK[datatype]), raw))


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def v2(self):
        """The body as V2 (JSON, or a JSON header then binary outputs): (header, {name: bytes})."""
        n = self.header("inference-header-content-length")
        if n is None:
            return self.json(), {}
        n = int(n)
        head = json.loads(self.body[:n].decode("utf-8"))
        outs, off = {}, n
        for o in head.get("outputs", []):
            size = (o.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                outs[o["name"]] = self.body[off:off + size]
                off += size
        if off != len(self.body):
            raise ValueError("binary outputs hold %d bytes, the body has %d after the header" % (off - n, len(self.body) - n))
        return head, outs


class Conn:
    """One keep-alive connection; requests can be written before earlier answers are read."""

    def __init__(self, host, port, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.host = "%s:%d" % (host, port)

    def close(self):
        self.sock.close()

    def raw(self, data):
        self.sock.sendall(data)

    def request_bytes(self, method, path, headers=None, body=b"", chunked=False, length=True):
        h = {"host": self.host}
        for k, v in (headers or {}).items():
            h[k.lower()] = v
        if chunked:
            h["transfer-encoding"] = "chunked"
            # two chunks at least, so that the server joins them
            parts = [body[: len(body) // 2], body[len(body) // 2:]] if body else []
            payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"
        else:
            if body or method in ("POST", "PUT") and length:
                h.setdefault("content-length", str(len(body)))
            payload = body
        head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
        return head.encode("latin-1"), payload

    def send(self, method, path, headers=None, body=b"", chunked=False):
        head, payload = self.request_bytes(method, path, headers, body, chunked)
        self.sock.sendall(head + payload)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self, head=False):
        """One response (skipping interim 1xx ones unless asked for them)."""
        while True:
            status_line = self._line().decode("latin-1")
            parts = status_line.split(" ", 2)
            status = int(parts[1])
            headers = {}
            while True:
                line = self._line()
                if not line:
                    break
                k, v = line.decode("latin-1").split(":", 1)
                headers[k.strip().lower()] = v.strip()
            if 100 <= status < 200:
                if head == "interim":
                    return Response(status, headers, b"")
                continue
            break
        if head is True or status in (204, 304):
            return Response(status, headers, b"")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._take(size)
                self._take(2)
        elif "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        else:
            # no length: the body runs to the end of the connection
            body = self.buf
            try:
                while True:
                    c = self.sock.recv(65536)
                    if not c:
                        break
                    body += c
            except socket.timeout:
                pass
            self.buf = b""
        return Response(status, headers, body)

    def request(self, method, path, headers=None, body=b"", chunked=False):
        self.send(method, path, headers, body, chunked)
        return self.read(head=method == "HEAD")


class V2:
    def __init__(self, url):
        hostport = url.split("://", 1)[1].rstrip("/")
        host, port = hostport.rsplit(":", 1)
        self.host, self.port = host.strip("[]"), int(port)

    def conn(self, timeout=10):
        return Conn(self.host, self.port, timeout)

    def call(self, method, path, headers=None, body=b"", chunked=False):
        c = self.conn()
        try:
            return c.request(method, path, headers, body, chunked)
        finally:
            c.close()

    def get(self, path):
        return self.call("GET", path)

    def infer_json(self, model, req, version=None, headers=None, encoding=None):
        body = json.dumps(req).encode()
        h = {"content-type": "application/json"}
        if encoding:
            body = compress(body, encoding)
            h["content-encoding"] = encoding
        h.update(headers or {})
        return self.call("POST", infer_path(model, version), h, body)

    def infer_binary(self, model, req, parts, version=None, headers=None, header_length=None, content_type="application/octet-stream"):
        """The binary extension: the JSON header, then each binary tensor's bytes in order."""
        head = json.dumps(req).encode()
        h = {"inference-header-content-length": str(len(head) if header_length is None else header_length)}
        if content_type:
            h["content-type"] = content_type
        h.update(headers or {})
        return self.call("POST", infer_path(model, version), h, head + b"".join(parts))


def infer_path(model, version=None):
    from urllib.parse import quote

    base = "/v2/models/" + quote(model, safe="")
    return base + ("/versions/" + version if version else "") + "/infer"


def compress(body, encoding):
    if encoding == "gzip":
        import gzip

        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    raise ValueError(encoding)


if __name__ == "__main__":
    import sys

    from v2_checks import main

    sys.exit(main(sys.argv[1:]))
