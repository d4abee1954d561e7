{
  # xpkg's binding over onnxruntime's C API (session.cc), built only by `xpkg gpu install`, which
  # fetches the C API headers of the matching onnxruntime release, checks them against pinned
  # digests and passes their folder as XPKG_ORT_HEADERS. Nothing is linked against onnxruntime:
  # the binding dlopens the libonnxruntime.so.1 onnxruntime-node loaded.
  "variables": {
    "ort_headers%": "<!(node -p \"process.env.XPKG_ORT_HEADERS || ''\")"
  },
  "targets": [
    {
      "target_name": "xpkg_ort",
      "sources": ["session.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<(ort_headers)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-fexceptions"],
      "libraries": ["-ldl"]
    }
  ]
}
