#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rootfs.h"
#include "util.h"

namespace shim {

namespace {

int g_cap_last = 40;

int apply_rlimits(const Process* p) {
  for (size_t i = 0; i < p->n_rlimits; i++) {
    struct rlimit rl = {p->rlimits[i].soft, p->rlimits[i].hard};
    if (setrlimit(p->rlimits[i].resource, &rl) < 0)
      return fail(errno, "setrlimit", "", "setting rlimit %d to %llu/%llu", p->rlimits[i].resource,
                  p->rlimits[i].soft, p->rlimits[i].hard);
  }
  return 0;
}

int apply_oom_score(const Process* p) {
  if (!p->has_oom_score_adj) return 0;
  char v[32];
  snprintf(v, sizeof v, "%lld", p->oom_score_adj);
  return write_string_file("/proc/self/oom_score_adj", v);
}

// The cwd is resolved inside "/" (which is the container root by now), so a symlinked
// WORKDIR can't point the process at a directory outside it.
int enter_cwd(const Process* p) {
  int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return fail(errno, "open", "/", "opening /");
  int fd = open_in_root(root, p->cwd, O_PATH | O_DIRECTORY);
  close(root);
  if (fd < 0) return err_context("entering the working directory");
  int rc = fchdir(fd) < 0 ? fail(errno, "fchdir", p->cwd, "entering %s", p->cwd) : 0;
  close(fd);
  return rc;
}

int drop_bounding_set(uint64_t keep) {
  for (int cap = 0; cap <= g_cap_last; cap++) {
    if (keep & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
      return fail(errno, "prctl", "", "dropping capability %d from the bounding set", cap);
  }
  return 0;
}

int switch_user(const Process* p) {
  // Keep the permitted set across setuid(2) so capset() below decides, not the uid change
  // (capabilities(7), "Effect of user ID changes on capabilities").
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) return fail(errno, "prctl", "", "PR_SET_KEEPCAPS");
  if (setgroups(p->n_groups, p->groups) < 0) return fail(errno, "setgroups", "", "setting %zu supplementary groups", p->n_groups);
  if (setresgid(p->gid, p->gid, p->gid) < 0) return fail(errno, "setresgid", "", "switching to gid %u", p->gid);
  if (setresuid(p->uid, p->uid, p->uid) < 0) return fail(errno, "setresuid", "", "switching to uid %u", p->uid);
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) return fail(errno, "prctl", "", "clearing PR_SET_KEEPCAPS");
  return 0;
}

int set_capabilities(const Process* p) {
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  for (int i = 0; i < 2; i++) {
    data[i].effective = static_cast<uint32_t>(p->cap_effective >> (32 * i));
    data[i].permitted = static_cast<uint32_t>(p->cap_permitted >> (32 * i));
    data[i].inheritable = static_cast<uint32_t>(p->cap_inheritable >> (32 * i));
  }
  if (syscall(SYS_capset, &hdr, data) < 0) return fail(errno, "capset", "", "setting capabilities");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
    return fail(errno, "prctl", "", "clearing ambient capabilities");
  for (int cap = 0; cap <= g_cap_last; cap++)
    if ((p->cap_ambient & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
      return fail(errno, "prctl", "", "raising ambient capability %d", cap);
  return 0;
}

const char* env_lookup(const Process* p, const char* name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < p->n_env; i++)
    if (strncmp(p->env[i], name, n) == 0 && p->env[i][n] == '=') return p->env[i] + n + 1;
  return nullptr;
}

// execvpe(3) semantics with the container's PATH, not the shim's.
int exec_with_path(const Process* p) {
  char* const* argv = const_cast<char* const*>(p->args);
  char* const* envp = const_cast<char* const*>(p->env);
  const char* file = p->args[0];
  if (strchr(file, '/')) {
    execve(file, argv, envp);
    return fail(errno, "execve", file, "executing %s", file);
  }
  const char* path = env_lookup(p, "PATH");
  if (!path) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  int saved = ENOENT;
  for (const char* dir = path; dir;) {
    const char* colon = strchr(dir, ':');
    size_t dlen = colon ? static_cast<size_t>(colon - dir) : strlen(dir);
    char full[4096];
    snprintf(full, sizeof full, "%.*s/%s", static_cast<int>(dlen), dlen ? dir : ".", file);
    execve(full, argv, envp);
    if (errno == EACCES) saved = EACCES;
    else if (errno != ENOENT && errno != ENOTDIR) saved = errno;
    dir = colon ? colon + 1 : nullptr;
  }
  return fail(saved, "execve", file, "executable file %s not found in $PATH", file);
}

}  // namespace

int load_cap_last_cap() {
  char* text = nullptr;
  if (read_file("/proc/sys/kernel/cap_last_cap", &text, nullptr) < 0) return -1;
  g_cap_last = atoi(text);
  free(text);
  if (g_cap_last <= 0 || g_cap_last > 63) g_cap_last = 40;
  return 0;
}

int finalize_and_exec(const Process* p) {
  umask(static_cast<mode_t>(p->umask & 0777));
  if (apply_rlimits(p) < 0 || apply_oom_score(p) < 0 || enter_cwd(p) < 0 ||
      drop_bounding_set(p->cap_bounding) < 0 || switch_user(p) < 0 || set_capabilities(p) < 0)
    return -1;
  if (p->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return fail(errno, "prctl", "", "setting no_new_privs");
  // Every inherited fd above stderr closes at execve; the error channel stays usable until
  // then so a failed exec can still be reported (close_range(2), CLOSE_RANGE_CLOEXEC).
  if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) return fail(errno, "close_range", "", "marking fds close-on-exec");
  return exec_with_path(p);
}

}  // namespace shim
