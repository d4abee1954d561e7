"""ctypes binding of native/build-cuda/libxpkg_cuda.so for the GPU tests and benchmarks.

Tensors are torch CUDA tensors; every call launches on torch's current stream, so the calls
compose with torch ops and can be captured in a CUDA graph.
"""
import ctypes
import os

import torch

c_int, c_float, c_void_p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p


class Preprocess(ctypes.Structure):
    _fields_ = [
        ("src_width", c_int), ("src_height", c_int), ("src_stride", c_int), ("src_channels", c_int),
        ("chan_map", c_int * 3), ("width", c_int), ("height", c_int),
        ("roi_x", c_int), ("roi_y", c_int), ("roi_width", c_int), ("roi_height", c_int),
        ("mul", c_float * 3), ("add", c_float * 3), ("pad", c_float * 3),
    ]


class Detect(ctypes.Structure):
    _fields_ = [
        ("anchors", c_int), ("attrs", c_int), ("objectness", c_int), ("agnostic", c_int), ("max_output", c_int),
        ("score_threshold", c_float), ("iou_threshold", c_float),
        ("pad_x", c_float), ("pad_y", c_float), ("scale_x", c_float), ("scale_y", c_float),
        ("clip_width", c_float), ("clip_height", c_float),
    ]


def _ptr(t):
    return c_void_p(t.data_ptr()) if t is not None else c_void_p(0)


def _stream():
    return c_void_p(torch.cuda.current_stream().cuda_stream)


class Lib:
    def __init__(self, path=None):
        here = os.path.dirname(os.path.abspath(__file__))
        path = path or os.path.join(here, "..", "..", "native", "build-cuda", "libxpkg_cuda.so")
        self.lib = ctypes.CDLL(path)
        L = self.lib
        L.xpkg_cuda_device_count.restype = c_int
        L.xpkg_cuda_preprocess.argtypes = [c_void_p, c_void_p, ctypes.POINTER(Preprocess), c_void_p]
        L.xpkg_cuda_nms_create.restype = c_void_p
        L.xpkg_cuda_nms_create.argtypes = [c_int]
        L.xpkg_cuda_nms_destroy.argtypes = [c_void_p]
        L.xpkg_cuda_nms.argtypes = [c_void_p, c_void_p, c_void_p, c_void_p, c_int, c_float, c_float, c_int, c_void_p, c_void_p, c_void_p]
        L.xpkg_cuda_detect.argtypes = [c_void_p, c_void_p, ctypes.POINTER(Detect), c_void_p, c_void_p, c_void_p]
        L.xpkg_cuda_argmax.argtypes = [c_void_p, c_int, c_int, c_int, c_int, c_void_p, c_void_p, c_void_p]
        L.xpkg_cuda_ctc.argtypes = [c_void_p, c_int, c_int, c_int, c_void_p, c_int, c_int, c_int, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p]
        L.xpkg_cuda_nms_configure.argtypes = [c_void_p, c_int, c_int]
        L.xpkg_cuda_nms_last_state.argtypes = [c_void_p, ctypes.POINTER(c_int), ctypes.POINTER(c_int)]
        for f in ("preprocess", "nms", "detect", "argmax", "ctc", "nms_configure", "nms_last_state"):
            getattr(L, "xpkg_cuda_" + f).restype = c_int

    @staticmethod
    def _ok(rc, what):
        if rc != 0:
            raise RuntimeError(f"{what}: cuda error {rc}")

    def letterbox_params(self, src_hw, channels, size, mean, std, pad_pixel=114.0, stride=None, chan_map=(0, 1, 2)):
        h, w = src_hw
        s = min(size / w, size / h)
        nw, nh = min(size, max(1, round(w * s))), min(size, max(1, round(h * s)))
        p = Preprocess()
        p.src_width, p.src_height, p.src_channels = w, h, channels
        p.src_stride = stride or w * channels
        p.chan_map[:] = list(chan_map)
        p.width = p.height = size
        p.roi_x, p.roi_y, p.roi_width, p.roi_height = (size - nw) // 2, (size - nh) // 2, nw, nh
        for k in range(3):
            p.mul[k] = 1.0 / 255.0 / std[k]
            p.add[k] = -mean[k] / std[k]
            p.pad[k] = (pad_pixel / 255.0 - mean[k]) / std[k]
        return p

    def preprocess(self, src_u8, dst_f32, params):
        self._ok(self.lib.xpkg_cuda_preprocess(_ptr(src_u8), _ptr(dst_f32), ctypes.byref(params), _stream()), "preprocess")

    def nms_workspace(self, max_n):
        ws = self.lib.xpkg_cuda_nms_create(max_n)
        if not ws:
            raise RuntimeError("xpkg_cuda_nms_create failed")
        return ws

    def nms_configure(self, ws, mode=0, debug_stop=0):
        self._ok(self.lib.xpkg_cuda_nms_configure(c_void_p(ws), mode, debug_stop), "nms_configure")

    def nms_last_state(self, ws):
        conv, it = c_int(0), c_int(0)
        self._ok(self.lib.xpkg_cuda_nms_last_state(c_void_p(ws), ctypes.byref(conv), ctypes.byref(it)), "nms_last_state")
        return conv.value, it.value

    def nms(self, ws, boxes, scores, keep, count, iou=0.5, score_threshold=float("-inf"), classes=None, max_output=None):
        n = scores.numel()
        self._ok(self.lib.xpkg_cuda_nms(c_void_p(ws), _ptr(boxes), _ptr(scores), _ptr(classes), n, iou, score_threshold,
                                        n if max_output is None else max_output, _ptr(keep), _ptr(count), _stream()), "nms")

    def detect(self, ws, head, params, dets, count):
        self._ok(self.lib.xpkg_cuda_detect(c_void_p(ws), _ptr(head), ctypes.byref(params), _ptr(dets), _ptr(count), _stream()), "detect")

    def argmax(self, logits, labels, scores=None, softmax=True):
        b, c = logits.shape[0], logits.shape[1]
        self._ok(self.lib.xpkg_cuda_argmax(_ptr(logits), b, c, logits[0, 0].numel(), int(softmax), _ptr(labels), _ptr(scores), _stream()), "argmax")

    def ctc(self, probs, work, ids, conf, counts, blank=0, lengths=None, softmax=False, merge=True):
        b, t, c = probs.shape
        self._ok(self.lib.xpkg_cuda_ctc(_ptr(probs), b, t, c, _ptr(lengths), blank, int(merge), int(softmax), _ptr(work),
                                        _ptr(ids), _ptr(conf), _ptr(counts), _stream()), "ctc")
