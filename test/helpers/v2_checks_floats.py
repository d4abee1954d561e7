"""Checks of a V2 server's float data by the independent client (v2_client.py), run by
test/serve-conformance.test.ts against its "dtypes" model (one identity per datatype: input
<dtype> -> output <dtype>_out). Each returns what it observed; the test says what is required."""


def non_finite(v):
    """NaN and ±Infinity in float request data as Python's json writes them (allow_nan, its
    default) and Triton's server reads them; refused in integer data and in parameters. What comes
    back is whatever the server writes (spelled here as Python reads it)."""
    import math

    from v2_checks import err  # imported here: v2_checks imports this file

    vals = [float("nan"), float("inf"), -float("inf"), 1.5]
    req = {
        "inputs": [
            {"name": "float32", "shape": [4], "datatype": "FP32", "data": vals},
            {"name": "float16", "shape": [4], "datatype": "FP16", "data": vals},
            {"name": "int32", "shape": [4], "datatype": "INT32", "data": [0] * 4},
            {"name": "uint8", "shape": [4], "datatype": "UINT8", "data": [0] * 4},
            {"name": "bool", "shape": [4], "datatype": "BOOL", "data": [False] * 4},
            {"name": "int64", "shape": [4], "datatype": "INT64", "data": [0] * 4},
        ],
        "outputs": [{"name": "float32_out"}, {"name": "float16_out"}],
    }
    r = v.infer_json("dtypes", req)
    spell = lambda x: "null" if x is None else "nan" if math.isnan(x) else repr(x)
    out = {"status": r.status}
    if r.status == 200:
        out["data"] = [[spell(x) for x in o["data"]] for o in r.json()["outputs"]]
    bad = dict(req, inputs=list(req["inputs"]))
    bad["inputs"][2] = {"name": "int32", "shape": [4], "datatype": "INT32", "data": [float("nan")] * 4}
    out["nan_in_int32"] = err(v.infer_json("dtypes", bad))
    out["nan_in_parameters"] = err(v.infer_json("dtypes", dict(req, parameters={"p": float("nan")})))
    return out
