// The subset of the OCI runtime-spec config.json (github.com/opencontainers/runtime-spec,
// config.md and config-linux.md) that d2p's TypeScript writes, plus d2p annotations.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "json.h"

namespace shim {

struct Mount {
  const char* destination;
  const char* type;
  const char* source;
  const char** options;
  size_t n_options;
};

struct Rlimit {
  int resource;
  unsigned long long soft, hard;
};

struct Device {
  const char* path;
  char type;  // 'c', 'b', 'p'
  long long major, minor, mode, uid, gid;
};

struct Namespace {
  int flag;          // CLONE_NEW*
  const char* path;  // join this one instead of creating (may be null)
};

struct Process {
  bool terminal = false;
  uid_t uid = 0;
  gid_t gid = 0;
  gid_t* groups = nullptr;
  size_t n_groups = 0;
  long long umask = 022;
  const char** args = nullptr;
  size_t n_args = 0;
  const char** env = nullptr;
  size_t n_env = 0;
  const char* cwd = "/";
  uint64_t cap_bounding = 0, cap_effective = 0, cap_permitted = 0, cap_inheritable = 0,
           cap_ambient = 0;
  Rlimit* rlimits = nullptr;
  size_t n_rlimits = 0;
  bool no_new_privileges = false;
  bool has_oom_score_adj = false;
  long long oom_score_adj = 0;
  // process.consoleSize (runtime-spec config.md): the terminal's initial size, 0 = unset.
  long long console_width = 0, console_height = 0;
};

struct Sysctl {
  const char* key;
  const char* value;
};

struct Config {
  JsonNode* json = nullptr;  // owns every string below
  Process process;
  const char* root_path = nullptr;
  bool root_readonly = false;
  const char* hostname = nullptr;
  const char* domainname = nullptr;
  Mount* mounts = nullptr;
  size_t n_mounts = 0;
  Namespace* namespaces = nullptr;
  size_t n_namespaces = 0;
  Sysctl* sysctls = nullptr;
  size_t n_sysctls = 0;
  const char** masked_paths = nullptr;
  size_t n_masked = 0;
  const char** readonly_paths = nullptr;
  size_t n_readonly = 0;
  Device* devices = nullptr;
  size_t n_devices = 0;
  const char* rootfs_propagation = nullptr;
  // d2p annotations (see src/runtime/oci.ts):
  const char* overlay_options = nullptr;  // dev.d2p.rootfs.overlay: overlayfs mount data
  const char* cgroup_dirs = nullptr;      // dev.d2p.cgroup.dirs: ':'-separated dirs to join
  const char* cgroup_memory = nullptr;    // dev.d2p.cgroup.memory: dir read for OOM kills
  // dev.d2p.log.max-size / max-file: json-file rotation (Docker's json-file options);
  // 0 = never rotate. Numbers travel as decimal strings, annotations being strings.
  long long log_max_size = 0;
  long long log_max_file = 1;
  // dev.d2p.stdin = "open": the workload's stdin is a pipe fed through attach.sock
  // (docker run -i / Compose stdin_open) instead of /dev/null.
  bool stdin_open = false;
};

// Parses bundle/config.json (or a bare process.json for exec when process_only).
int config_load(const char* path, Config* cfg);
int process_load(const char* path, Config* cfg);
void config_free(Config* cfg);
bool config_has_ns(const Config* cfg, int flag, const char** path);

// Moves the calling process, which must have one thread, into every cgroup of
// cfg->cgroup_dirs (colon-separated). On cgroup v1 it writes "0" to `tasks`: a thread
// moving itself skips the kernel's global threadgroup lock, whose first taking after a
// quiet spell waits out an RCU grace period (5-22 ms measured for a pid written to
// cgroup.procs, on the path of every container start and exec); 0.3 ms this way.
int join_own_cgroups(const Config* cfg);

}  // namespace shim
