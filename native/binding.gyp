{
  # xpkg native kernels. Built by `npm ci` through node-gyp; kernels/ holds the portable C++17
  # sources shared with the ASan build (asan.sh). XPKG_NATIVE_MARCH picks the x86 target; the
  # default x86-64-v2 (SSE4.2, 2009 on) runs on any x86-64 host an image may land on, and the AVX2 /
  # AVX-512 paths are chosen at run time (kernels/common.h simdSupport). A build for a newer target
  # (e.g. "native") records its ISA; native/index.ts refuses it on a CPU that lacks any of it.
  "variables": {
    "xpkg_march%": "<!(node -p \"process.env.XPKG_NATIVE_MARCH || 'x86-64-v2'\")"
  },
  "targets": [
    {
      "target_name": "xpkg_native",
      "sources": [
        "src/addon.cc",
        "src/image.cc",
        "src/detect.cc",
        "src/classify.cc",
        "../kernels/preprocess.cc",
        "../kernels/crop.cc",
        "../kernels/nms.cc",
        "../kernels/decode.cc",
        "../kernels/classify.cc",
        "../kernels/textdet.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "../kernels"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      # -ffp-contract=off: no fused multiply-add, so double arithmetic matches the portable
      # TypeScript bit for bit where the exactness contracts (nms, textdet) rely on it.
      "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-fexceptions"],
      "libraries": [],
      "conditions": [
        ["target_arch=='x64' or target_arch=='ia32'", {
          "cflags_cc": ["-march=<(xpkg_march)"]
        }],
        ["OS=='linux'", {
          "libraries": ["-ldl", "-pthread"],
          "cflags_cc": ["-pthread"]
        }],
        ["OS=='mac'", {
          "xcode_settings": {
            "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "MACOSX_DEPLOYMENT_TARGET": "11.0",
            "OTHER_CPLUSPLUSFLAGS": ["-O3", "-ffp-contract=off"]
          }
        }],
        ["OS=='win'", {
          "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17", "/fp:precise"] } }
        }]
      ]
    }
  ]
}
