{
  # Sources are globbed so each native part can grow files without editing this one.
  "targets": [
    {
      "target_name": "d2p",
      "sources": ["<!@(ls -1 src/addon/*.cc)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra"],
      "cflags_cc!": ["-fno-exceptions"]
    },
    {
      # The per-container supervisor: a standalone executable, small and static so that
      # its resident memory stays under the 1 MiB budget (DESIGN.md §9).
      "target_name": "d2p-shim",
      "type": "executable",
      "sources": ["<!@(ls -1 src/shim/*.cc)"],
      "cflags_cc": ["-std=c++17", "-Os", "-fno-exceptions", "-fno-rtti", "-Wall", "-Wextra"],
      "ldflags": ["-static", "-s"]
    },
    {
      # `init: true`: a minimal PID 1 that forwards signals and reaps zombies (the role of
      # Docker's docker-init/tini), bind-mounted read-only into the container. Separate from
      # the shim so the container never sees the supervisor's binary (CVE-2019-5736).
      "target_name": "d2p-init",
      "type": "executable",
      "sources": ["<!@(ls -1 src/init/*.cc)"],
      "cflags_cc": ["-std=c++17", "-Os", "-fno-exceptions", "-fno-rtti", "-Wall", "-Wextra"],
      "ldflags": ["-static", "-s"]
    }
  ]
}
