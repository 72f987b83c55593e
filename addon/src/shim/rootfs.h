// Builds the container's filesystem view inside its private mount namespace: rootfs
// (overlayfs or bind), OCI mounts, devices, pivot_root, masked and read-only paths.
#pragma once
#include "config.h"

namespace shim {

// Opens `path` (absolute or relative) as if `rootfd` were "/": symlinks and ".." can't
// leave it (openat2(2) RESOLVE_IN_ROOT). Returns the fd or -1 with g_status set.
int open_in_root(int rootfd, const char* path, int flags);
// Steps before pivot_root (host paths still visible). Returns -1 with g_status set.
int setup_rootfs(const Config* cfg);
// pivot_root into the prepared rootfs and drop the old root.
int pivot_into_rootfs(const Config* cfg);
// Steps after pivot_root: sysctls, masked and read-only paths, read-only "/".
int finish_rootfs(const Config* cfg);

}  // namespace shim
