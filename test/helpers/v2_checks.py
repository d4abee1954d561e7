"""Checks of a V2 server by the independent client (v2_client.py): each returns what it observed
(statuses, error codes, shapes), and the test that runs it (test/serve-v2-client.test.ts) says what
the protocol requires. Models: multi-variant-add-one (FP32 x [-1] -> y = x + 1) and detector (an
image as UINT8 [H, W, C] or one encoded image as BYTES [1] -> boxes as one BYTES element)."""

import base64
import json
import socket
import threading

from v2_client import V2, from_bytes, infer_path, to_bytes

ADD = "multi-variant-add-one"
PNG = "fixtures/detector/eval/000.png"


def x(values, **kw):
    t = {"name": "x", "shape": [len(values)], "datatype": "FP32", "data": values}
    t.update(kw)
    return t


def xbin(n):
    return {"name": "x", "shape": [n], "datatype": "FP32", "parameters": {"binary_data_size": 4 * n}}


def err(r):
    """Status, code, and whether the body is the protocol's error object (an "error" string)."""
    try:
        body = json.loads(r.body.decode("utf-8"))
    except ValueError:
        return [r.status, None, False]
    return [r.status, body.get("code"), isinstance(body.get("error"), str)]


def endpoints(v):
    meta = v.get("/v2/models/" + ADD).json()
    version = meta["versions"][0]
    return {
        "live": [v.get("/v2/health/live").status, v.get("/v2/health/live").json()],
        "ready": [v.get("/v2/health/ready").status, v.get("/v2/health/ready").json()],
        "server": sorted(v.get("/v2").json().keys()),
        "metadata": {k: meta[k] for k in ("name", "platform", "inputs", "outputs")},
        "metadata_keys": [sorted(t.keys()) for t in meta["inputs"] + meta["outputs"]],
        "version_metadata": v.get("/v2/models/%s/versions/%s" % (ADD, version)).json()["name"],
        "model_ready": v.get("/v2/models/%s/ready" % ADD).json(),
        "version_ready": v.get("/v2/models/%s/versions/%s/ready" % (ADD, version)).status,
    }


def infer_json(v):
    flat = v.infer_json(ADD, {"id": "42", "inputs": [x([1, 2, 3, 4])]})
    nested = v.infer_json(ADD, {"inputs": [x([[1, 2], [3, 4]], shape=[4])]})
    subset = v.infer_json(ADD, {"inputs": [x([1])], "outputs": [{"name": "y"}]})
    out = flat.json()
    return {
        "status": [flat.status, nested.status, subset.status],
        "content_type": flat.header("content-type").split(";")[0],
        "id": out.get("id"),
        "model_name": out["model_name"],
        "outputs": [{k: o[k] for k in ("name", "shape", "datatype", "data")} for o in out["outputs"]],
        "nested_same": nested.json()["outputs"][0]["data"] == out["outputs"][0]["data"],
        "subset": [o["name"] for o in subset.json()["outputs"]],
    }


def infer_binary(v):
    data = to_bytes("FP32", [1, 2, 3])
    results = {}
    # binary in, JSON out; then as octet-stream, as application/json (the extension is signalled by
    # its header, not the content type) and with no content type
    for ct in ("application/octet-stream", "application/json", None):
        r = v.infer_binary(ADD, {"inputs": [xbin(3)]}, [data], content_type=ct)
        results["in:%s" % ct] = [r.status, r.json()["outputs"][0].get("data") if r.status == 200 else None]
    # everything back as binary
    r = v.infer_binary(ADD, {"inputs": [xbin(3)], "parameters": {"binary_data_output": True}}, [data])
    head, outs = r.v2()
    o = head["outputs"][0]
    results["out"] = [r.status, r.header("content-type"), o["datatype"], o["shape"], from_bytes("FP32", outs["y"])]
    # JSON in, binary out for one output; the per-output setting overrides the request's
    r = v.infer_json(ADD, {"inputs": [x([1])], "outputs": [{"name": "y", "parameters": {"binary_data": True}}]})
    results["json_in_binary_out"] = from_bytes("FP32", r.v2()[1]["y"])
    r = v.infer_json(
        ADD,
        {
            "inputs": [x([1])],
            "parameters": {"binary_data_output": True},
            "outputs": [{"name": "y", "parameters": {"binary_data": False}}],
        },
    )
    results["override"] = [r.header("inference-header-content-length"), r.json()["outputs"][0]["data"]]
    return results


def bytes_tensors(v):
    png = open(PNG, "rb").read()
    el = to_bytes("BYTES", [png])
    req = {
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(el)}}],
        "parameters": {"binary_data_output": True},
    }
    r = v.infer_binary("detector", req, [el])
    head, outs = r.v2()
    o = head["outputs"][0]
    boxes = from_bytes("BYTES", outs["boxes"])
    j = v.infer_json(
        "detector",
        {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(png).decode()]}]},
    )
    two = v.infer_binary("detector", dict(req, inputs=[dict(req["inputs"][0], shape=[2], parameters={"binary_data_size": 2 * len(el)})]), [el, el])
    return {
        "binary": [r.status, o["datatype"], o["shape"], len(boxes), isinstance(json.loads(boxes[0]), list)],
        "json": [j.status, j.json()["outputs"][0]["datatype"], json.loads(j.json()["outputs"][0]["data"][0]) == json.loads(boxes[0])],
        "two_elements": err(two),
    }


def errors(v):
    f = to_bytes("FP32", [1, 2, 3])
    post = lambda body, headers: v.call("POST", infer_path(ADD), headers, body)
    hb = json.dumps({"inputs": [xbin(3)]}).encode()
    octet = lambda n: {"content-type": "application/octet-stream", "inference-header-content-length": str(n)}
    cases = {
        "wrong_datatype": v.infer_json(ADD, {"inputs": [x([1, 2], datatype="INT32")]}),
        "wrong_shape": v.infer_json(ADD, {"inputs": [x([1, 2], shape=[1, 2])]}),
        "wrong_count": v.infer_json(ADD, {"inputs": [x([1, 2], shape=[3])]}),
        "missing_input": v.infer_json(ADD, {"inputs": []}),
        "unknown_input": v.infer_json(ADD, {"inputs": [dict(x([1]), name="z")]}),
        "unknown_output": v.infer_json(ADD, {"inputs": [x([1])], "outputs": [{"name": "q"}]}),
        "unknown_model": v.infer_json("nope", {"inputs": [x([1])]}),
        "unknown_model_odd_name": v.infer_json("no pe~", {"inputs": [x([1])]}),
        "unknown_version": v.infer_json(ADD, {"inputs": [x([1])]}, version="0123456789abcdef"),
        "unknown_version_1": v.infer_json(ADD, {"inputs": [x([1])]}, version="1"),
        "metadata_version_1": v.get("/v2/models/%s/versions/1" % ADD),
        "bad_json": post(b'{"inputs": [', {"content-type": "application/json"}),
        "empty_body": post(b"", {"content-type": "application/json"}),
        "header_length_too_long": post(hb + f, octet(len(hb) + 100)),
        "header_length_not_a_number": post(hb + f, octet("abc")),
        "truncated_binary": post(hb + f[:8], octet(len(hb))),
        "extra_bytes": post(hb + f + b"\0\0\0\0", octet(len(hb))),
        "data_and_binary_size": post(
            json.dumps({"inputs": [dict(xbin(3), data=[1, 2, 3])]}).encode() + f,
            octet(len(json.dumps({"inputs": [dict(xbin(3), data=[1, 2, 3])]}))),
        ),
        # $parameter = $string : $string | $number | $boolean
        "parameter_not_scalar": v.infer_json(ADD, {"inputs": [x([1])], "parameters": {"a": {"b": [1]}}}),
        "input_parameter_not_scalar": v.infer_json(ADD, {"inputs": [dict(x([1]), parameters={"a": [1]})]}),
        "proto_key": post(b'{"__proto__": {"x": 1}, "inputs": [%s]}' % json.dumps(x([1])).encode(), {"content-type": "application/json"}),
        "binary_data_output_not_bool": v.infer_json(ADD, {"inputs": [x([1])], "parameters": {"binary_data_output": "yes"}}),
        "shared_memory_output": v.infer_json(
            ADD, {"inputs": [x([1])], "outputs": [{"name": "y", "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 4}}]}
        ),
        "gzip_corrupt": post(b"\x1f\x8b not gzip", {"content-type": "application/json", "content-encoding": "gzip"}),
        "encoding_unknown": post(b"{}", {"content-type": "application/json", "content-encoding": "br"}),
    }
    out = {k: err(r) for k, r in cases.items()}
    out["healthy_after"] = v.infer_json(ADD, {"inputs": [x([1])]}).status
    return out


def keepalive(v):
    """Many requests on one connection, bad ones among them: each answered, on the same connection."""
    good = json.dumps({"inputs": [x([1])]}).encode()
    bodies = [good, b'{"inputs": [', good, json.dumps({"inputs": [x([1], datatype="INT8")]}).encode(), b"", good]
    c = v.conn()
    statuses = []
    try:
        for i in range(60):
            r = c.request("POST", infer_path(ADD), {"content-type": "application/json"}, bodies[i % len(bodies)])
            statuses.append(r.status)
    except ConnectionError:
        statuses.append("closed")
    finally:
        c.close()
    return {"count": len(statuses), "statuses": sorted(set(map(str, statuses)))}


def pipelined(v):
    """Ten requests written at once, refused ones among them (malformed JSON, a content type not
    taken, a header length beyond the body): ten answers, in order."""
    good = json.dumps({"inputs": [x([1])]}).encode()
    c = v.conn()
    data = b""
    for i in range(10):
        h = {"content-type": "application/json", "x-request-id": "p%d" % i}
        body = good
        if i == 4:
            body = b"{nope"
        elif i == 6:
            h["content-type"] = "text/plain"
        elif i == 8:
            h["content-type"] = "application/octet-stream"
            h["inference-header-content-length"] = str(len(good) + 10)
        head, payload = c.request_bytes("POST", infer_path(ADD), h, body)
        data += head + payload
    c.raw(data)
    got = []
    try:
        for _ in range(10):
            r = c.read()
            got.append([r.header("x-request-id"), r.status])
    except ConnectionError:
        got.append("closed")
    finally:
        c.close()
    return got


def transport(v):
    """Expect: 100-continue, chunked bodies, compressed bodies, HEAD and OPTIONS."""
    out = {}
    good = json.dumps({"inputs": [x([1, 2])]}).encode()
    c = v.conn()
    head, payload = c.request_bytes("POST", infer_path(ADD), {"content-type": "application/json", "expect": "100-continue"}, good)
    c.raw(head)
    interim = c.read(head="interim")
    c.raw(payload)
    out["continue"] = [interim.status, c.read().status]
    c.close()
    # a body declared larger than the server takes: the final answer instead of 100, nothing uploaded
    c = v.conn(timeout=5)
    head, _ = c.request_bytes(
        "POST", infer_path(ADD), {"content-type": "application/json", "expect": "100-continue", "content-length": str(10**9)}, b""
    )
    c.raw(head)
    first = c.read(head="interim")
    out["continue_too_large"] = err(first) if first.status != 100 else [100]
    c.close()
    # a model the server does not hold: its 404 instead of 100, nothing uploaded
    c = v.conn(timeout=5)
    head, _ = c.request_bytes(
        "POST", infer_path("no-such-model"), {"content-type": "application/json", "expect": "100-continue", "content-length": str(len(good))}, b""
    )
    c.raw(head)
    first = c.read(head="interim")
    out["continue_unknown_model"] = err(first) if first.status != 100 else [100]
    c.close()
    out["chunked_json"] = v.call("POST", infer_path(ADD), {"content-type": "application/json"}, good, chunked=True).status
    hb = json.dumps({"inputs": [xbin(2)]}).encode()
    out["chunked_binary"] = v.call(
        "POST", infer_path(ADD),
        {"content-type": "application/octet-stream", "inference-header-content-length": str(len(hb))},
        hb + to_bytes("FP32", [1, 2]), chunked=True,
    ).status
    for enc in ("gzip", "deflate"):
        r = v.infer_json(ADD, {"inputs": [x([1, 2])]}, encoding=enc)
        out[enc] = [r.status, r.json()["outputs"][0]["data"]]
    h = v.call("HEAD", "/v2/health/ready")
    out["head_ready"] = [h.status, len(h.body)]
    o = v.call("OPTIONS", infer_path(ADD))
    out["options_infer"] = [o.status, "POST" in (o.header("allow") or "")]
    g = v.call("GET", infer_path(ADD))
    out["get_infer"] = err(g) + ["POST" in (g.header("allow") or "")]
    out["post_live"] = err(v.call("POST", "/v2/health/live"))
    out["no_route"] = err(v.get("/v2/nothing/here"))
    return out


def client_errors(v):
    """Bytes that are not HTTP, a body cut short by the client, oversized headers: the error shape."""
    out = {}
    for name, data, fin in (
        ("not_http", b"GARBAGE / HTTP/1.1\r\n\r\n", False),
        (
            "cut_short",
            b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"inputs\":" % infer_path(ADD).encode(),
            True,
        ),
        ("huge_headers", b"GET /v2 HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20000 + b"\r\n\r\n", False),
    ):
        c = v.conn(timeout=5)
        try:
            c.raw(data)
            if fin:
                c.sock.shutdown(socket.SHUT_WR)
            r = c.read()
            out[name] = err(r) + [r.header("content-type", ).split(";")[0] if r.header("content-type") else None]
        except (ConnectionError, socket.timeout) as e:
            out[name] = str(e)
        finally:
            c.close()
    out["healthy_after"] = v.get("/v2/health/ready").status
    return out


def slow_client(v):
    """A body that never completes (a byte now and then): 408 in the error shape once the server's
    request timeout passes, and the server serves the next request."""
    import time

    c = v.conn(timeout=8)
    head = b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{" % infer_path(ADD).encode()
    c.raw(head)
    c.sock.settimeout(0.2)
    t0 = time.time()
    got = None
    while time.time() - t0 < 8:
        try:
            c.raw(b" ")
            c._fill()
            c.sock.settimeout(8)
            got = c.read()
            break
        except socket.timeout:
            continue
        except (ConnectionError, OSError):
            break
    c.close()
    return {"answer": err(got) if got else None, "healthy_after": v.get("/v2/health/ready").status}


def concurrent(v):
    results = [None] * 16

    def run(i):
        try:
            r = v.infer_json(ADD, {"id": str(i), "inputs": [x([i % 4, 1])]})
            b = r.json()
            results[i] = b["id"] == str(i) and b["outputs"][0]["data"] == [i % 4 + 1, 2]
        except Exception as e:  # noqa: BLE001 - reported, not raised
            results[i] = str(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return results


def classification(v):
    req = {"inputs": [x([1, 5, 3, 0])], "outputs": [{"name": "y", "parameters": {"classification": 2}}]}
    r = v.infer_json(ADD, req)
    o = r.json()["outputs"][0]
    b = v.infer_json(ADD, dict(req, parameters={"binary_data_output": True}))
    head, outs = b.v2()
    return {
        "extensions": v.get("/v2").json()["extensions"],
        "json": [r.status, o["datatype"], o["shape"], [s.split(":")[1] for s in o["data"]], [float(s.split(":")[0]) for s in o["data"]]],
        "binary": [head["outputs"][0]["shape"], [s.decode() for s in from_bytes("BYTES", outs["y"])] == o["data"]],
        "zero": err(v.infer_json(ADD, dict(req, outputs=[{"name": "y", "parameters": {"classification": 0}}]))),
        "not_a_tensor": err(
            v.infer_json(
                "detector",
                {
                    "inputs": [{"name": "image", "shape": [2, 2, 3], "datatype": "UINT8", "data": [0] * 12}],
                    "outputs": [{"name": "boxes", "parameters": {"classification": 1}}],
                },
            )
        ),
    }


def repository(v):
    """The model_repository extension as Triton's clients call it."""
    post = lambda path, body: v.call("POST", path, {"content-type": "application/json"} if body else {}, body)
    index = post("/v2/repository/index", b"").json()
    ready = post("/v2/repository/index", b'{"ready": true}').json()
    base = "/v2/repository/models/%s/" % ADD
    unload = post(base + "unload", b'{"parameters": {"unload_dependents": false}}')
    gone = v.get("/v2/models/%s/ready" % ADD).status
    load = post(base + "load", b'{"parameters": {}}')
    config = post(base + "load", b'{"parameters": {"config": "{}"}}')
    plain = post(base + "load", b"")
    return {
        "index_types": sorted({",".join(sorted(k for k in e if k in ("name", "state", "version", "reason"))) for e in index}),
        "refused": [[e["name"], e["state"]] for e in index if e["state"] != "READY"][0] if len(index) > 2 else None,
        "index_strings": all(isinstance(e[k], str) for e in index for k in ("name", "state", "version", "reason") if k in e),
        "ready_only": all(e["state"] == "READY" for e in ready),
        "unload": [unload.status, gone],
        "load": [load.status, plain.status, v.get("/v2/models/%s/ready" % ADD).status],
        "load_config": err(config),
    }


def scoped(v):
    """A scoped model (@acme/add-one) named in paths as clients write it: the slash as it is
    (Triton's client quotes with "/" safe), '@' as it is or %40, or everything encoded."""
    name = "@acme/add-one"
    req = json.dumps({"inputs": [x([1])]}).encode()
    out = {}
    for label, path in (
        ("raw", "/v2/models/@acme/add-one"),
        ("at_encoded", "/v2/models/%40acme/add-one"),
        ("all_encoded", "/v2/models/%40acme%2Fadd-one"),
    ):
        meta = v.get(path)
        r = v.call("POST", path + "/infer", {"content-type": "application/json"}, req)
        out[label] = [meta.status, meta.json().get("name"), r.status, r.json().get("model_name"), v.get(path + "/ready").status]
    out["unknown"] = err(v.get("/v2/models/@acme/nope"))
    return out


# checks against test/serve-conformance.test.ts's server (its "dtypes" model)
from v2_checks_floats import non_finite  # noqa: E402
from v2_checks_more import fp16_rounding, repository_bodies  # noqa: E402


CHECKS = {f.__name__: f for f in (
    endpoints, infer_json, infer_binary, bytes_tensors, errors, keepalive, pipelined, transport,
    client_errors, slow_client, concurrent, classification, repository, scoped, non_finite,
    repository_bodies, fp16_rounding,
)}


def main(argv):
    v = V2(argv[0])
    for name in argv[1:]:
        try:
            got = CHECKS[name](v)
            print(json.dumps({"check": name, "ok": True, "got": got}))
        except Exception as e:  # noqa: BLE001 - the test shows what failed
            print(json.dumps({"check": name, "ok": False, "got": "%s: %s" % (type(e).__name__, e)}))
    return 0
