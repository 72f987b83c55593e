#include "config.h"

#include <errno.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "util.h"

namespace shim {

namespace {

struct NameValue {
  const char* name;
  int value;
};

const NameValue kCaps[] = {
    {"CAP_CHOWN", 0}, {"CAP_DAC_OVERRIDE", 1}, {"CAP_DAC_READ_SEARCH", 2}, {"CAP_FOWNER", 3},
    {"CAP_FSETID", 4}, {"CAP_KILL", 5}, {"CAP_SETGID", 6}, {"CAP_SETUID", 7},
    {"CAP_SETPCAP", 8}, {"CAP_LINUX_IMMUTABLE", 9}, {"CAP_NET_BIND_SERVICE", 10},
    {"CAP_NET_BROADCAST", 11}, {"CAP_NET_ADMIN", 12}, {"CAP_NET_RAW", 13},
    {"CAP_IPC_LOCK", 14}, {"CAP_IPC_OWNER", 15}, {"CAP_SYS_MODULE", 16},
    {"CAP_SYS_RAWIO", 17}, {"CAP_SYS_CHROOT", 18}, {"CAP_SYS_PTRACE", 19},
    {"CAP_SYS_PACCT", 20}, {"CAP_SYS_ADMIN", 21}, {"CAP_SYS_BOOT", 22},
    {"CAP_SYS_NICE", 23}, {"CAP_SYS_RESOURCE", 24}, {"CAP_SYS_TIME", 25},
    {"CAP_SYS_TTY_CONFIG", 26}, {"CAP_MKNOD", 27}, {"CAP_LEASE", 28},
    {"CAP_AUDIT_WRITE", 29}, {"CAP_AUDIT_CONTROL", 30}, {"CAP_SETFCAP", 31},
    {"CAP_MAC_OVERRIDE", 32}, {"CAP_MAC_ADMIN", 33}, {"CAP_SYSLOG", 34},
    {"CAP_WAKE_ALARM", 35}, {"CAP_BLOCK_SUSPEND", 36}, {"CAP_AUDIT_READ", 37},
    {"CAP_PERFMON", 38}, {"CAP_BPF", 39}, {"CAP_CHECKPOINT_RESTORE", 40},
};

const NameValue kRlimits[] = {
    {"RLIMIT_AS", RLIMIT_AS}, {"RLIMIT_CORE", RLIMIT_CORE}, {"RLIMIT_CPU", RLIMIT_CPU},
    {"RLIMIT_DATA", RLIMIT_DATA}, {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_LOCKS", RLIMIT_LOCKS}, {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE},
    {"RLIMIT_NOFILE", RLIMIT_NOFILE}, {"RLIMIT_NPROC", RLIMIT_NPROC},
    {"RLIMIT_RSS", RLIMIT_RSS}, {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
    {"RLIMIT_RTTIME", RLIMIT_RTTIME}, {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_STACK", RLIMIT_STACK},
};

const NameValue kNamespaces[] = {
    {"pid", CLONE_NEWPID}, {"network", CLONE_NEWNET}, {"mount", CLONE_NEWNS},
    {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}, {"cgroup", CLONE_NEWCGROUP},
};

template <size_t N>
int lookup(const NameValue (&table)[N], const char* name, int* out) {
  for (size_t i = 0; i < N; i++)
    if (strcmp(table[i].name, name) == 0) { *out = table[i].value; return 0; }
  return -1;
}

int parse_cap_set(const JsonNode* caps, const char* key, uint64_t* out) {
  const char** names;
  size_t n;
  if (json_string_array(caps, key, &names, &n, "process.capabilities") < 0) return -1;
  *out = 0;
  for (size_t i = 0; i < n; i++) {
    int bit;
    if (lookup(kCaps, names[i], &bit) < 0) {
      free(names);
      return fail(0, "", "config.json", "process.capabilities.%s: unknown capability %s", key, names[i]);
    }
    *out |= 1ULL << bit;
  }
  free(names);
  return 0;
}

int parse_user(const JsonNode* user, Process* p) {
  long long uid = 0, gid = 0;
  if (json_int(user, "uid", &uid, "process.user") < 0 || json_int(user, "gid", &gid, "process.user") < 0 ||
      json_int(user, "umask", &p->umask, "process.user") < 0)
    return -1;
  p->uid = static_cast<uid_t>(uid);
  p->gid = static_cast<gid_t>(gid);
  const JsonNode* groups = json_get(user, "additionalGids");
  if (!groups) return 0;
  size_t n = 0;
  for (const JsonNode* g = groups->child; g; g = g->next) n++;
  p->groups = static_cast<gid_t*>(calloc(n + 1, sizeof(gid_t)));
  if (!p->groups) return fail(ENOMEM, "malloc", "", "allocating groups");
  for (const JsonNode* g = groups->child; g; g = g->next) {
    if (g->type != JsonType::Number) return fail(0, "", "config.json", "process.user.additionalGids must be integers");
    p->groups[p->n_groups++] = static_cast<gid_t>(g->number);
  }
  return 0;
}

int parse_rlimits(const JsonNode* list, Process* p) {
  if (!list) return 0;
  size_t n = 0;
  for (const JsonNode* r = list->child; r; r = r->next) n++;
  p->rlimits = static_cast<Rlimit*>(calloc(n + 1, sizeof(Rlimit)));
  if (!p->rlimits) return fail(ENOMEM, "malloc", "", "allocating rlimits");
  for (const JsonNode* r = list->child; r; r = r->next) {
    const char* type = nullptr;
    long long soft = 0, hard = 0;
    if (json_string(r, "type", &type, "process.rlimits[]") < 0 || json_int(r, "soft", &soft, "process.rlimits[]") < 0 ||
        json_int(r, "hard", &hard, "process.rlimits[]") < 0)
      return -1;
    Rlimit* out = &p->rlimits[p->n_rlimits++];
    if (!type || lookup(kRlimits, type, &out->resource) < 0)
      return fail(0, "", "config.json", "process.rlimits: unknown type %s", type ? type : "(none)");
    // -1 in JSON is how TS spells "unlimited" (RLIM_INFINITY does not fit a double).
    out->soft = soft < 0 ? RLIM_INFINITY : static_cast<unsigned long long>(soft);
    out->hard = hard < 0 ? RLIM_INFINITY : static_cast<unsigned long long>(hard);
  }
  return 0;
}

int parse_process(const JsonNode* proc, Process* p) {
  if (!proc || proc->type != JsonType::Object) return fail(0, "", "config.json", "process is required");
  if (json_bool(proc, "terminal", &p->terminal, "process") < 0 ||
      json_string(proc, "cwd", &p->cwd, "process") < 0 ||
      json_bool(proc, "noNewPrivileges", &p->no_new_privileges, "process") < 0 ||
      json_string_array(proc, "args", &p->args, &p->n_args, "process") < 0 ||
      json_string_array(proc, "env", &p->env, &p->n_env, "process") < 0)
    return -1;
  if (p->n_args == 0) return fail(0, "", "config.json", "process.args must not be empty");
  if (json_get(proc, "oomScoreAdj")) {
    p->has_oom_score_adj = true;
    if (json_int(proc, "oomScoreAdj", &p->oom_score_adj, "process") < 0) return -1;
  }
  const JsonNode* console = json_get(proc, "consoleSize");
  if (console && (json_int(console, "width", &p->console_width, "process.consoleSize") < 0 ||
                  json_int(console, "height", &p->console_height, "process.consoleSize") < 0))
    return -1;
  if (p->console_width < 0 || p->console_width > 65535 || p->console_height < 0 || p->console_height > 65535)
    return fail(0, "", "config.json", "process.consoleSize must be within 0..65535");
  const JsonNode* user = json_get(proc, "user");
  if (user && parse_user(user, p) < 0) return -1;
  const JsonNode* caps = json_get(proc, "capabilities");
  if (caps && (parse_cap_set(caps, "bounding", &p->cap_bounding) < 0 ||
               parse_cap_set(caps, "effective", &p->cap_effective) < 0 ||
               parse_cap_set(caps, "permitted", &p->cap_permitted) < 0 ||
               parse_cap_set(caps, "inheritable", &p->cap_inheritable) < 0 ||
               parse_cap_set(caps, "ambient", &p->cap_ambient) < 0))
    return -1;
  return parse_rlimits(json_get(proc, "rlimits"), p);
}

size_t count(const JsonNode* list) {
  size_t n = 0;
  for (const JsonNode* e = list ? list->child : nullptr; e; e = e->next) n++;
  return n;
}

int parse_mounts(const JsonNode* list, Config* c) {
  c->mounts = static_cast<Mount*>(calloc(count(list) + 1, sizeof(Mount)));
  if (!c->mounts) return fail(ENOMEM, "malloc", "", "allocating mounts");
  for (const JsonNode* m = list ? list->child : nullptr; m; m = m->next) {
    Mount* out = &c->mounts[c->n_mounts++];
    if (json_string(m, "destination", &out->destination, "mounts[]") < 0 ||
        json_string(m, "type", &out->type, "mounts[]") < 0 ||
        json_string(m, "source", &out->source, "mounts[]") < 0 ||
        json_string_array(m, "options", &out->options, &out->n_options, "mounts[]") < 0)
      return -1;
    if (!out->destination || out->destination[0] != '/')
      return fail(0, "", "config.json", "mounts[%zu].destination must be an absolute path", c->n_mounts - 1);
  }
  return 0;
}

int parse_namespaces(const JsonNode* list, Config* c) {
  c->namespaces = static_cast<Namespace*>(calloc(count(list) + 1, sizeof(Namespace)));
  if (!c->namespaces) return fail(ENOMEM, "malloc", "", "allocating namespaces");
  for (const JsonNode* n = list ? list->child : nullptr; n; n = n->next) {
    const char* type = nullptr;
    Namespace* out = &c->namespaces[c->n_namespaces++];
    if (json_string(n, "type", &type, "linux.namespaces[]") < 0 ||
        json_string(n, "path", &out->path, "linux.namespaces[]") < 0)
      return -1;
    if (!type || lookup(kNamespaces, type, &out->flag) < 0)
      return fail(0, "", "config.json", "linux.namespaces: unsupported type %s", type ? type : "(none)");
  }
  return 0;
}

int parse_devices(const JsonNode* list, Config* c) {
  c->devices = static_cast<Device*>(calloc(count(list) + 1, sizeof(Device)));
  if (!c->devices) return fail(ENOMEM, "malloc", "", "allocating devices");
  for (const JsonNode* d = list ? list->child : nullptr; d; d = d->next) {
    Device* out = &c->devices[c->n_devices++];
    const char* type = nullptr;
    out->mode = 0666;
    if (json_string(d, "path", &out->path, "linux.devices[]") < 0 ||
        json_string(d, "type", &type, "linux.devices[]") < 0 ||
        json_int(d, "major", &out->major, "linux.devices[]") < 0 ||
        json_int(d, "minor", &out->minor, "linux.devices[]") < 0 ||
        json_int(d, "fileMode", &out->mode, "linux.devices[]") < 0 ||
        json_int(d, "uid", &out->uid, "linux.devices[]") < 0 ||
        json_int(d, "gid", &out->gid, "linux.devices[]") < 0)
      return -1;
    if (!out->path || !type || (type[0] != 'c' && type[0] != 'b') || type[1])
      return fail(0, "", "config.json", "linux.devices[%zu] needs a path and type c or b", c->n_devices - 1);
    out->type = type[0];
  }
  return 0;
}

int parse_sysctls(const JsonNode* obj, Config* c) {
  c->sysctls = static_cast<Sysctl*>(calloc(count(obj) + 1, sizeof(Sysctl)));
  if (!c->sysctls) return fail(ENOMEM, "malloc", "", "allocating sysctls");
  for (const JsonNode* s = obj ? obj->child : nullptr; s; s = s->next) {
    if (s->type != JsonType::String) return fail(0, "", "config.json", "linux.sysctl.%s must be a string", s->key);
    c->sysctls[c->n_sysctls++] = Sysctl{s->key, s->string};
  }
  return 0;
}

int parse_linux(const JsonNode* linux, Config* c) {
  if (parse_namespaces(json_get(linux, "namespaces"), c) < 0 || parse_devices(json_get(linux, "devices"), c) < 0 ||
      parse_sysctls(json_get(linux, "sysctl"), c) < 0 ||
      json_string_array(linux, "maskedPaths", &c->masked_paths, &c->n_masked, "linux") < 0 ||
      json_string_array(linux, "readonlyPaths", &c->readonly_paths, &c->n_readonly, "linux") < 0 ||
      json_string(linux, "rootfsPropagation", &c->rootfs_propagation, "linux") < 0)
    return -1;
  return 0;
}

// A positive decimal annotation (TS already converted "10m" to bytes); absent keeps *out.
int annotation_number(const JsonNode* a, const char* key, long long min, long long* out) {
  const char* text = nullptr;
  if (json_string(a, key, &text, "annotations") < 0) return -1;
  if (!text) return 0;
  char* end = nullptr;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || end == text || *end || v < min)
    return fail(0, "", "config.json", "annotations.%s: expected an integer >= %lld, got \"%.64s\"", key, min, text);
  *out = v;
  return 0;
}

int parse_annotations(const JsonNode* a, Config* c) {
  const char* stdin_mode = nullptr;
  if (json_string(a, "dev.d2p.rootfs.overlay", &c->overlay_options, "annotations") < 0 ||
      json_string(a, "dev.d2p.cgroup.dirs", &c->cgroup_dirs, "annotations") < 0 ||
      json_string(a, "dev.d2p.cgroup.memory", &c->cgroup_memory, "annotations") < 0 ||
      annotation_number(a, "dev.d2p.log.max-size", 1, &c->log_max_size) < 0 ||
      annotation_number(a, "dev.d2p.log.max-file", 1, &c->log_max_file) < 0 ||
      json_string(a, "dev.d2p.stdin", &stdin_mode, "annotations") < 0)
    return -1;
  if (stdin_mode && strcmp(stdin_mode, "open") != 0)
    return fail(0, "", "config.json", "annotations.dev.d2p.stdin: expected \"open\", got \"%.64s\"", stdin_mode);
  c->stdin_open = stdin_mode != nullptr;
  return 0;
}

int load_json(const char* path, Config* c) {
  char* text = nullptr;
  size_t len = 0;
  if (read_file(path, &text, &len) < 0) return -1;
  c->json = json_parse(text, len, path);
  free(text);
  return c->json ? 0 : -1;
}

}  // namespace

int config_load(const char* path, Config* c) {
  if (load_json(path, c) < 0) return -1;
  const JsonNode* root = json_get(c->json, "root");
  const JsonNode* linux = json_get(c->json, "linux");
  if (parse_process(json_get(c->json, "process"), &c->process) < 0 ||
      json_string(root, "path", &c->root_path, "root") < 0 ||
      json_bool(root, "readonly", &c->root_readonly, "root") < 0 ||
      json_string(c->json, "hostname", &c->hostname, "config") < 0 ||
      json_string(c->json, "domainname", &c->domainname, "config") < 0 ||
      parse_mounts(json_get(c->json, "mounts"), c) < 0 || parse_linux(linux, c) < 0 ||
      parse_annotations(json_get(c->json, "annotations"), c) < 0)
    return err_context("invalid %s", path);
  if (!c->root_path || c->root_path[0] != '/')
    return fail(0, "", path, "invalid %s: root.path must be an absolute path", path);
  return 0;
}

int process_load(const char* path, Config* c) {
  if (load_json(path, c) < 0) return -1;
  if (parse_process(c->json, &c->process) < 0 ||
      parse_annotations(json_get(c->json, "annotations"), c) < 0)
    return err_context("invalid %s", path);
  return 0;
}

void config_free(Config* c) {
  free(c->process.groups);
  free(c->process.args);
  free(c->process.env);
  free(c->process.rlimits);
  for (size_t i = 0; i < c->n_mounts; i++) free(c->mounts[i].options);
  free(c->mounts);
  free(c->namespaces);
  free(c->sysctls);
  free(c->masked_paths);
  free(c->readonly_paths);
  free(c->devices);
  json_free(c->json);
  *c = Config();
}

bool config_has_ns(const Config* c, int flag, const char** path) {
  for (size_t i = 0; i < c->n_namespaces; i++)
    if (c->namespaces[i].flag == flag) {
      if (path) *path = c->namespaces[i].path;
      return true;
    }
  return false;
}

// Writes pid into every cgroup TypeScript prepared: the supervisor does it for the child
// before the child may continue, and exec for itself before it joins the namespaces, so
// nothing the workload does escapes the limits.
int join_own_cgroups(const Config* cfg) {
  if (!cfg->cgroup_dirs || !*cfg->cgroup_dirs) return 0;
  char* dirs = xstrdup(cfg->cgroup_dirs);
  if (!dirs) return fail(ENOMEM, "malloc", "", "copying cgroup dirs");
  int rc = 0;
  char* save = nullptr;
  for (char* d = strtok_r(dirs, ":", &save); d && rc == 0; d = strtok_r(nullptr, ":", &save)) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tasks", d);
    if (access(path, F_OK) == 0) {
      rc = write_string_file(path, "0");
    } else if (errno == ENOENT) {
      // cgroup v2 has no tasks file; "0" in cgroup.procs is the writer too.
      snprintf(path, sizeof path, "%s/cgroup.procs", d);
      rc = write_string_file(path, "0");
    } else {
      rc = fail(errno, "access", path, "looking for the tasks file of %s", d);
    }
  }
  free(dirs);
  return rc < 0 ? err_context("joining the container cgroup") : 0;
}

}  // namespace shim
