// The last steps before execve, shared by the container's first process and by exec:
// rlimits, umask, cwd, user and groups, capabilities, no_new_privs, fd hygiene.
#pragma once
#include "config.h"

namespace shim {

// Applies everything and execs process.args. Returns only on failure (-1, g_status set).
int finalize_and_exec(const Process* p);
// Reads /proc/sys/kernel/cap_last_cap; must run while the host /proc is still reachable.
int load_cap_last_cap();

}  // namespace shim
