"""PyTorch eager reference for the detector benchmark (bench/gpu/side-by-side.ts), on the GPU:

  python3 bench/gpu/detector_torch.py --image raw.rgb --width 1920 --height 1080 [--runs 200]

The detector's own module (fixtures/detector/train.py `Detector`) with the weights of the shipped
model.onnx: the export folded each BatchNorm into its convolution, so every BatchNorm becomes an
identity and each convolution takes the ONNX Conv's weight and bias, in execution order (shapes
checked pairwise; the output is compared with onnxruntime on the CPU). One image, uint8 HWC RGB in
host memory -> boxes in host memory, all on the GPU in between: upload, letterbox resize to 320
(bilinear, antialiased), pad 114, scale to [0, 1], forward (cudnn.benchmark on), decode (best class, score > 0.25),
torchvision.ops.batched_nms (IoU 0.5), top 100, boxes mapped back to the image, download.
Prints one JSON document: p50/p99 ms over --runs after warm-up, the boxes, the check.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "fixtures", "detector"))
import train  # noqa: E402  (the detector's module; importing it trains nothing)

SIZE = 320


def fold_into(model: nn.Module, onnx_path: str) -> int:
    """Gives `model` the weights of the exported ONNX graph; returns the number of convolutions."""
    import onnx
    from onnx import numpy_helper

    for m in model.modules():
        if isinstance(m, nn.Sequential) and len(m) >= 2 and isinstance(m[0], nn.Conv2d) and isinstance(m[1], nn.BatchNorm2d):
            m[1] = nn.Identity()
            m[0].bias = nn.Parameter(torch.zeros(m[0].out_channels))
    order: list[nn.Conv2d] = []
    hooks = [c.register_forward_hook(lambda mod, _i, _o: order.append(mod)) for c in model.modules() if isinstance(c, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, SIZE, SIZE))
    for h in hooks:
        h.remove()
    g = onnx.load(onnx_path).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    convs = [n for n in g.node if n.op_type == "Conv"]
    if len(convs) != len(order):
        raise SystemExit(f"{len(convs)} ONNX convolutions, {len(order)} in the module")
    for mod, node in zip(order, convs):
        w = torch.from_numpy(init[node.input[1]].copy())
        if w.shape != mod.weight.shape:
            raise SystemExit(f"shape mismatch: {tuple(w.shape)} vs {tuple(mod.weight.shape)}")
        mod.weight.data.copy_(w)
        b = init[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
        mod.bias.data.copy_(torch.from_numpy(b.copy()))
    return len(order)


def check_against_onnx(model: nn.Module, onnx_path: str) -> float:
    import onnxruntime as ort

    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(x).numpy()
    theirs = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    return float(np.abs(ours - theirs).max())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--onnx", default=os.path.join(ROOT, "fixtures", "detector", "model.onnx"))
    ap.add_argument("--runs", type=int, default=200)
    a = ap.parse_args()

    model = train.Detector().eval()
    convs = fold_into(model, a.onnx)
    max_diff = check_against_onnx(model, a.onnx)
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True  # one input shape: let cuDNN pick its fastest kernels
    model = model.to(dev)
    img = np.fromfile(a.image, dtype=np.uint8).reshape(a.height, a.width, 3)
    h, w = a.height, a.width
    s = min(SIZE / w, SIZE / h)
    rw, rh = max(1, round(w * s)), max(1, round(h * s))
    ox, oy = (SIZE - rw) // 2, (SIZE - rh) // 2
    offset = torch.tensor([ox, oy, ox, oy], device=dev, dtype=torch.float32)

    @torch.no_grad()
    def detect(pixels: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pixels).to(dev, non_blocking=False).permute(2, 0, 1).unsqueeze(0).float()
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)
        canvas = torch.full((1, 3, SIZE, SIZE), 114.0, device=dev)
        canvas[:, :, oy:oy + rh, ox:ox + rw] = x.round().clamp(0, 255)
        out = model(canvas / 255.0)[0]
        scores, cls = out[:, 4:].max(1)
        keep = scores > 0.25
        boxes, scores, cls = out[keep, :4], scores[keep], cls[keep]
        xyxy = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1)
        k = torchvision.ops.batched_nms(xyxy, scores, cls, 0.5)[:100]
        xyxy = (xyxy[k] - offset) / s
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, w)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, h)
        return torch.cat([xyxy, scores[k, None], cls[k, None].float()], 1).cpu().numpy()

    for _ in range(20):
        detect(img)
    times = []
    for _ in range(a.runs):
        torch.cuda.synchronize()
        t = time.perf_counter()
        r = detect(img)  # .cpu() at the end waits for the GPU
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p = lambda q: times[min(len(times) - 1, max(0, int(np.ceil(q / 100 * len(times))) - 1))]  # noqa: E731
    print(json.dumps({
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": torch.cuda.get_device_name(0),
        "convolutions": convs,
        "maxAbsDiffVsOnnxCpu": max_diff,
        "p50": round(p(50), 3),
        "p99": round(p(99), 3),
        "boxes": [{"box": [round(float(v), 2) for v in b[:4]], "score": round(float(b[4]), 4), "class": int(b[5])} for b in r],
    }))


if __name__ == "__main__":
    main()
