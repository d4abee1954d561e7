"""More checks of a V2 server by the independent client (v2_client.py): request bodies of the
model_repository extension as other clients send them, run by test/serve-v2-client.test.ts, and
FP16 data given as JSON numbers, run by test/serve-conformance.test.ts against its "dtypes" model
(input float16 -> output float16_out). Each returns what it observed; the test says what is required."""

import struct

ADD = "multi-variant-add-one"


def repository_bodies(v):
    """Triton's server reads a repository request's body whatever its content type, and an empty
    one as no options: Go's and generic clients post an empty body as application/json, and
    `curl -d ''` as a form. A body that is not JSON is still refused."""
    from v2_checks import err  # imported here: v2_checks imports this file

    def post(path, ctype, body=b""):
        return v.call("POST", path, {"content-type": ctype}, body)

    base = "/v2/repository/models/%s/" % ADD
    form = "application/x-www-form-urlencoded"
    index_json = post("/v2/repository/index", "application/json")
    index_form = post("/v2/repository/index", form)
    ready_text = post("/v2/repository/index", "text/plain", b'{"ready": true}')
    unload = post(base + "unload", "application/json").status
    gone = v.get("/v2/models/%s/ready" % ADD).status
    load = post(base + "load", form).status
    back = v.get("/v2/models/%s/ready" % ADD).status
    listed = lambda r: r.status == 200 and any(e.get("name") == ADD for e in r.json())
    return {
        "index_empty_json": listed(index_json),
        "index_empty_form": listed(index_form),
        "index_text": listed(ready_text),
        "unload_load": [unload, gone, load, back],
        "not_json": err(post("/v2/repository/index", form, b"ready=true")),
        "proto_key": err(post("/v2/repository/index", "application/json", b'{"__proto__": {"ready": true}}')),
    }


def half_bits(x):
    """IEEE half bits of a double, rounded once to nearest even (Python's struct), or ±Infinity past the range."""
    try:
        return struct.unpack("<H", struct.pack("<e", float(x)))[0]
    except OverflowError:
        return 0x7C00 | (0x8000 if x < 0 else 0)


# Values within 2^-40 of a midpoint between two halves (and plain ones): rounding them to float32
# first puts them on the midpoint, where the tie goes to the even half, the wrong one for some.
FP16_VALUES = [
    1 + 2**-11 + 2**-40,
    1 + 3 * 2**-11 - 2**-40,
    -(1 + 2**-11 + 2**-40),
    2**-25 + 2**-50,
    3 * 2**-25 - 2**-50,
    1000.25 + 2**-30,
    65519.99,
    65520.0,
    0.1,
    -2.5,
    1e-7,
]


def fp16_rounding(v):
    """FP16 data as JSON numbers, read back as binary data (the bits) and as JSON (the values): the
    values whose half differs from the one struct rounds to."""
    others = [
        {"name": "float32", "shape": [len(FP16_VALUES)], "datatype": "FP32", "data": [0.0] * len(FP16_VALUES)},
        {"name": "int32", "shape": [len(FP16_VALUES)], "datatype": "INT32", "data": [0] * len(FP16_VALUES)},
        {"name": "uint8", "shape": [len(FP16_VALUES)], "datatype": "UINT8", "data": [0] * len(FP16_VALUES)},
        {"name": "bool", "shape": [len(FP16_VALUES)], "datatype": "BOOL", "data": [False] * len(FP16_VALUES)},
        {"name": "int64", "shape": [len(FP16_VALUES)], "datatype": "INT64", "data": [0] * len(FP16_VALUES)},
    ]
    half = {"name": "float16", "shape": [len(FP16_VALUES)], "datatype": "FP16", "data": FP16_VALUES}
    want = [half_bits(x) for x in FP16_VALUES]
    out = {}
    binary = v.infer_json("dtypes", {
        "inputs": [half] + others,
        "outputs": [{"name": "float16_out", "parameters": {"binary_data": True}}],
    })
    head, outs = binary.v2()
    bits = list(struct.unpack("<%dH" % len(FP16_VALUES), outs["float16_out"])) if binary.status == 200 else []
    out["binary"] = [binary.status, [repr(x) for x, b, w in zip(FP16_VALUES, bits, want) if b != w]]
    as_json = v.infer_json("dtypes", {"inputs": [half] + others, "outputs": [{"name": "float16_out"}]})
    values = as_json.json()["outputs"][0]["data"] if as_json.status == 200 else []
    # a half's value is exact in a double: the JSON number read back has the same bits (±Infinity
    # is written as null, test/serve-conformance.test.ts says so: compared in binary only)
    finite = lambda w: w & 0x7C00 != 0x7C00
    out["json"] = [as_json.status, [repr(x) for x, got, w in zip(FP16_VALUES, values, want) if finite(w) and half_bits(got) != w]]
    return out
