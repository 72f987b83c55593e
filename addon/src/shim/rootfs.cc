#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util.h"

namespace shim {

namespace {

// Root of the container filesystem while we build it (an O_PATH fd).
int g_rootfd = -1;

struct FdPath {
  char s[32];
  explicit FdPath(int fd) { snprintf(s, sizeof s, "/proc/self/fd/%d", fd); }
};

struct MountOpts {
  unsigned long flags = 0;
  unsigned long propagation = 0;
  char data[1024] = {0};
};

struct FlagName {
  const char* name;
  bool clear;
  unsigned long flag;
};

const FlagName kFlags[] = {
    {"ro", false, MS_RDONLY}, {"rw", true, MS_RDONLY}, {"nosuid", false, MS_NOSUID},
    {"suid", true, MS_NOSUID}, {"nodev", false, MS_NODEV}, {"dev", true, MS_NODEV},
    {"noexec", false, MS_NOEXEC}, {"exec", true, MS_NOEXEC}, {"sync", false, MS_SYNCHRONOUS},
    {"async", true, MS_SYNCHRONOUS}, {"bind", false, MS_BIND}, {"rbind", false, MS_BIND | MS_REC},
    {"noatime", false, MS_NOATIME}, {"atime", true, MS_NOATIME}, {"relatime", false, MS_RELATIME},
    {"norelatime", true, MS_RELATIME}, {"strictatime", false, MS_STRICTATIME},
    {"nodiratime", false, MS_NODIRATIME}, {"diratime", true, MS_NODIRATIME},
};

const FlagName kPropagation[] = {
    {"private", false, MS_PRIVATE}, {"rprivate", false, MS_PRIVATE | MS_REC},
    {"slave", false, MS_SLAVE}, {"rslave", false, MS_SLAVE | MS_REC},
    {"shared", false, MS_SHARED}, {"rshared", false, MS_SHARED | MS_REC},
    {"unbindable", false, MS_UNBINDABLE}, {"runbindable", false, MS_UNBINDABLE | MS_REC},
};

bool match_flag(const FlagName* table, size_t n, const char* opt, unsigned long* flags) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(table[i].name, opt) != 0) continue;
    if (table[i].clear) *flags &= ~table[i].flag;
    else *flags |= table[i].flag;
    return true;
  }
  return false;
}

int parse_mount_options(const Mount* m, MountOpts* out) {
  size_t used = 0;
  for (size_t i = 0; i < m->n_options; i++) {
    const char* o = m->options[i];
    if (match_flag(kFlags, sizeof kFlags / sizeof kFlags[0], o, &out->flags)) continue;
    if (match_flag(kPropagation, sizeof kPropagation / sizeof kPropagation[0], o, &out->propagation)) continue;
    size_t n = strlen(o);
    if (used + n + 2 > sizeof out->data)
      return fail(E2BIG, "mount", m->destination, "mount options of %s are too long", m->destination);
    if (used) out->data[used++] = ',';
    memcpy(out->data + used, o, n + 1);
    used += n;
  }
  if (m->type && (strcmp(m->type, "bind") == 0)) out->flags |= MS_BIND;
  return 0;
}

long sys_openat2(int dirfd, const char* path, int flags, unsigned long long resolve) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = static_cast<unsigned long long>(flags);
  how.resolve = resolve;
  return syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

int ensure_in_root_depth(int rootfd, const char* path, bool leaf_is_dir, int depth);

// A component that exists as a dangling symlink: create its target, resolved inside the
// root as the kernel would resolve it after pivot_root (runc's securejoin MkdirAll).
int create_link_target(int rootfd, int parent_fd, const char* parent, const char* name, int depth) {
  char link[4096];
  ssize_t n = readlinkat(parent_fd, name, link, sizeof link - 1);
  if (n < 0) return fail(errno, "readlinkat", name, "reading symlink %s/%s", parent, name);
  link[n] = 0;
  char target[8192];
  if (link[0] == '/') snprintf(target, sizeof target, "%s", link);
  else snprintf(target, sizeof target, "%s/%s", parent, link);
  int fd = ensure_in_root_depth(rootfd, target, true, depth + 1);
  if (fd < 0) return -1;
  close(fd);
  return 0;
}

// Creates every missing component of `path` inside the root, then opens it (O_PATH).
// Each component is created with mkdirat() relative to an fd already resolved in-root,
// so a symlink swapped in concurrently is never followed outside.
int ensure_in_root(int rootfd, const char* path, bool leaf_is_dir) {
  return ensure_in_root_depth(rootfd, path, leaf_is_dir, 0);
}

int ensure_in_root_depth(int rootfd, const char* path, bool leaf_is_dir, int depth) {
  // SYMLOOP_MAX-like bound: a link cycle is ELOOP, as path resolution would say.
  if (depth > 40) return fail(ELOOP, "openat2", path, "too many levels of symbolic links");
  char prefix[4096];
  size_t len = strlen(path);
  if (len >= sizeof prefix) return fail(ENAMETOOLONG, "openat2", path, "path too long");
  int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
  if (cur < 0) return fail(errno, "fcntl", path, "duplicating the root fd");
  size_t i = 0;
  while (i < len) {
    while (i < len && path[i] == '/') i++;
    if (i >= len) break;
    size_t start = i;
    while (i < len && path[i] != '/') i++;
    memcpy(prefix, path, i);
    prefix[i] = 0;
    char name[256];
    size_t nlen = i - start;
    if (nlen >= sizeof name) { close(cur); return fail(ENAMETOOLONG, "mkdirat", path, "component too long"); }
    memcpy(name, path + start, nlen);
    name[nlen] = 0;
    bool last = (i >= len) || path[i + strspn(path + i, "/")] == 0;
    int fd = static_cast<int>(sys_openat2(rootfd, prefix, O_PATH | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS));
    if (fd < 0 && errno == ENOENT) {
      int rc;
      if (!last || leaf_is_dir) {
        rc = mkdirat(cur, name, 0755);
      } else {
        rc = openat(cur, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (rc >= 0) close(rc);
      }
      if (rc < 0 && errno != EEXIST) {
        int e = errno;
        close(cur);
        return fail(e, last && !leaf_is_dir ? "openat" : "mkdirat", path, "creating %s in the rootfs", prefix);
      }
      struct stat st;
      if (rc < 0 && fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
        char parent[4096];
        memcpy(parent, path, start);
        parent[start] = 0;
        if (create_link_target(rootfd, cur, parent, name, depth) < 0) { close(cur); return -1; }
      }
      fd = static_cast<int>(sys_openat2(rootfd, prefix, O_PATH | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS));
    }
    if (fd < 0) {
      int e = errno;
      close(cur);
      return fail(e, "openat2", path, "resolving %s inside the rootfs", prefix);
    }
    close(cur);
    cur = fd;
  }
  return cur;
}

int mount_at(const char* source, int target_fd, const char* type, unsigned long flags, const char* data,
             const char* what) {
  FdPath t(target_fd);
  if (mount(source, t.s, type, flags, data && *data ? data : nullptr) < 0)
    return fail(errno, "mount", what, "mounting %s on %s", type ? type : source, what);
  return 0;
}

// A remount must name the new mount, not the directory under it: reopen the path.
int reopen(const char* path) {
  int fd = open_in_root(g_rootfd, path, O_PATH | O_NOFOLLOW);
  return fd;
}

unsigned long locked_flags(int fd) {
  struct statvfs sv;
  if (fstatvfs(fd, &sv) < 0) return 0;
  unsigned long f = 0;
  if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

int remount_bind(const char* path, unsigned long flags) {
  int fd = reopen(path);
  if (fd < 0) return err_context("remounting %s", path);
  // Flags the mount already has must be repeated, or the kernel refuses the remount
  // when they are locked (mount(2), "EPERM ... locked flags").
  int rc = mount_at(nullptr, fd, nullptr, MS_REMOUNT | MS_BIND | flags | locked_flags(fd), nullptr, path);
  close(fd);
  return rc;
}

int set_propagation(const char* path, unsigned long propagation) {
  int fd = reopen(path);
  if (fd < 0) return err_context("setting propagation of %s", path);
  int rc = mount_at(nullptr, fd, nullptr, propagation, nullptr, path);
  close(fd);
  return rc;
}

int mount_bind(const Mount* m, const MountOpts* o) {
  if (!m->source) return fail(EINVAL, "mount", m->destination, "bind mount on %s has no source", m->destination);
  // The source is a host path chosen by the user or by d2p (volumes); opening it once and
  // mounting the fd means what we checked is what gets mounted.
  int src = open(m->source, O_PATH | O_CLOEXEC);
  if (src < 0) return fail(errno, "open", m->source, "opening bind source %s", m->source);
  struct stat st;
  if (fstat(src, &st) < 0) { int e = errno; close(src); return fail(e, "fstat", m->source, "inspecting bind source"); }
  int tgt = ensure_in_root(g_rootfd, m->destination, S_ISDIR(st.st_mode));
  if (tgt < 0) { close(src); return err_context("preparing bind target %s", m->destination); }
  FdPath s(src);
  int rc = mount_at(s.s, tgt, nullptr, MS_BIND | (o->flags & MS_REC), nullptr, m->destination);
  close(src);
  close(tgt);
  if (rc < 0) return -1;
  unsigned long extra = o->flags & ~(MS_BIND | MS_REC);
  if (extra && remount_bind(m->destination, extra) < 0) return -1;
  return set_propagation(m->destination, o->propagation ? o->propagation : static_cast<unsigned long>(MS_PRIVATE));
}

bool host_is_cgroup2() {
  struct statfs sf;
  return statfs("/sys/fs/cgroup", &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC;
}

// cgroup v1: a tmpfs with one read-only hierarchy per controller line of /proc/self/cgroup.
// We are already in our own cgroup namespace, so each mount shows only our cgroup.
int mount_cgroup_v1_hierarchies(const Mount* m, const MountOpts* o) {
  char* text = nullptr;
  if (read_file("/proc/self/cgroup", &text, nullptr) < 0) return -1;
  int rc = 0;
  for (char* line = strtok(text, "\n"); line && rc == 0; line = strtok(nullptr, "\n")) {
    char* c1 = strchr(line, ':');
    char* c2 = c1 ? strchr(c1 + 1, ':') : nullptr;
    if (!c2) continue;
    *c2 = 0;
    const char* controllers = c1 + 1;
    if (!*controllers || strncmp(controllers, "name=", 5) == 0) continue;
    char dest[512];
    snprintf(dest, sizeof dest, "%s/%s", m->destination, controllers);
    int fd = ensure_in_root(g_rootfd, dest, true);
    if (fd < 0) { rc = -1; break; }
    rc = mount_at("cgroup", fd, "cgroup", o->flags | MS_NOSUID | MS_NODEV | MS_NOEXEC, controllers, dest);
    close(fd);
  }
  free(text);
  return rc;
}

int mount_cgroup(const Mount* m, const MountOpts* o, int tgt) {
  if (host_is_cgroup2())
    return mount_at("cgroup2", tgt, "cgroup2", o->flags | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, m->destination);
  if (mount_at("tmpfs", tgt, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755", m->destination) < 0) return -1;
  if (mount_cgroup_v1_hierarchies(m, o) < 0) return err_context("mounting cgroup v1 hierarchies");
  return (o->flags & MS_RDONLY) ? remount_bind(m->destination, MS_RDONLY) : 0;
}

int mount_one(const Mount* m) {
  MountOpts o;
  if (parse_mount_options(m, &o) < 0) return -1;
  if (o.flags & MS_BIND) return mount_bind(m, &o);
  if (!m->type) return fail(EINVAL, "mount", m->destination, "mount on %s has no type", m->destination);
  int tgt = ensure_in_root(g_rootfd, m->destination, true);
  if (tgt < 0) return err_context("preparing mount target %s", m->destination);
  int rc;
  if (strcmp(m->type, "cgroup") == 0 || strcmp(m->type, "cgroup2") == 0)
    rc = mount_cgroup(m, &o, tgt);
  else
    rc = mount_at(m->source ? m->source : m->type, tgt, m->type, o.flags, o.data, m->destination);
  close(tgt);
  if (rc < 0) return -1;
  return o.propagation ? set_propagation(m->destination, o.propagation) : 0;
}

int mount_rootfs(const Config* cfg) {
  int dir = open(cfg->root_path, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (dir < 0) return fail(errno, "open", cfg->root_path, "opening the rootfs mountpoint");
  int rc;
  if (cfg->overlay_options)
    rc = mount_at("overlay", dir, "overlay", 0, cfg->overlay_options, cfg->root_path);
  else  // pivot_root(2) needs new_root to be a mount point.
    rc = mount_at(cfg->root_path, dir, nullptr, MS_BIND | MS_REC, nullptr, cfg->root_path);
  close(dir);
  if (rc < 0) return err_context("mounting the rootfs");
  g_rootfd = open(cfg->root_path, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (g_rootfd < 0) return fail(errno, "open", cfg->root_path, "opening the mounted rootfs");
  return 0;
}

const char* base_name(const char* path) {
  const char* slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

int parent_dir_fd(const char* path) {
  char parent[512];
  snprintf(parent, sizeof parent, "%s", path);
  char* slash = strrchr(parent, '/');
  if (slash == parent) parent[1] = 0;
  else if (slash) *slash = 0;
  return ensure_in_root(g_rootfd, parent, true);
}

int create_device(const Device* d) {
  int dir = parent_dir_fd(d->path);
  if (dir < 0) return err_context("creating device %s", d->path);
  const char* name = base_name(d->path);
  mode_t type = d->type == 'c' ? S_IFCHR : S_IFBLK;
  dev_t dev = makedev(static_cast<unsigned>(d->major), static_cast<unsigned>(d->minor));
  int rc = 0;
  if (mknodat(dir, name, type | static_cast<mode_t>(d->mode & 07777), dev) < 0)
    rc = fail(errno, "mknodat", d->path, "creating device node %s", d->path);
  // mknod(2) applies the umask; the OCI fileMode is the mode the node must end up with.
  else if (fchmodat(dir, name, static_cast<mode_t>(d->mode & 07777), 0) < 0)
    rc = fail(errno, "fchmodat", d->path, "setting the mode of %s", d->path);
  else if (fchownat(dir, name, static_cast<uid_t>(d->uid), static_cast<gid_t>(d->gid), AT_SYMLINK_NOFOLLOW) < 0)
    rc = fail(errno, "fchownat", d->path, "chowning %s", d->path);
  close(dir);
  return rc;
}

// config-linux.md "Default Devices": the runtime MUST supply these even when
// linux.devices does not list them.
int create_default_devices(const Config* cfg) {
  static const Device defaults[] = {
      {"/dev/null", 'c', 1, 3, 0666, 0, 0}, {"/dev/zero", 'c', 1, 5, 0666, 0, 0},
      {"/dev/full", 'c', 1, 7, 0666, 0, 0}, {"/dev/random", 'c', 1, 8, 0666, 0, 0},
      {"/dev/urandom", 'c', 1, 9, 0666, 0, 0}, {"/dev/tty", 'c', 5, 0, 0666, 0, 0},
  };
  for (const Device& d : defaults) {
    bool listed = false;
    for (size_t i = 0; i < cfg->n_devices && !listed; i++) listed = strcmp(cfg->devices[i].path, d.path) == 0;
    if (!listed && create_device(&d) < 0) return -1;
  }
  return 0;
}

int create_dev_symlinks() {
  static const char* const links[][2] = {
      {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
      {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
  };
  int dev = ensure_in_root(g_rootfd, "/dev", true);
  if (dev < 0) return err_context("creating /dev links");
  for (const auto& l : links) {
    if (symlinkat(l[0], dev, l[1]) < 0 && errno != EEXIST) {
      int e = errno;
      close(dev);
      return fail(e, "symlinkat", l[1], "creating /dev/%s", l[1]);
    }
  }
  close(dev);
  return 0;
}

int set_root_propagation(const Config* cfg) {
  // Nothing mounted in the container may propagate back to the host: make every mount we
  // inherited a slave (default, as runc) or private before touching anything.
  unsigned long flags = MS_REC | MS_SLAVE;
  const char* p = cfg->rootfs_propagation;
  if (p && strcmp(p, "private") == 0) flags = MS_PRIVATE;
  else if (p && strcmp(p, "rprivate") == 0) flags = MS_REC | MS_PRIVATE;
  else if (p && strcmp(p, "slave") == 0) flags = MS_SLAVE;
  else if (p && strcmp(p, "rslave") != 0)
    return fail(EINVAL, "mount", p, "unsupported linux.rootfsPropagation %s", p);
  if (mount(nullptr, "/", nullptr, flags, nullptr) < 0)
    return fail(errno, "mount", "/", "making / %s", p ? p : "rslave");
  return 0;
}

int ensure_cwd(const Config* cfg) {
  int fd = ensure_in_root(g_rootfd, cfg->process.cwd, true);
  if (fd < 0) return err_context("creating the working directory %s", cfg->process.cwd);
  close(fd);
  return 0;
}

int check_dev_null(int rootfd, int* out) {
  int fd = open_in_root(rootfd, "/dev/null", O_PATH | O_NOFOLLOW);
  if (fd < 0) return err_context("masking needs /dev/null");
  struct stat st;
  if (fstat(fd, &st) < 0) { int e = errno; close(fd); return fail(e, "fstat", "/dev/null", "inspecting /dev/null"); }
  // A /dev/null that is a symlink or a regular file would let the container choose what
  // gets bind-mounted over /proc files (CVE-2019-16884 style).
  if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 1 || minor(st.st_rdev) != 3) {
    close(fd);
    return fail(EPERM, "fstat", "/dev/null", "/dev/null is not the character device 1:3; refusing to mask with it");
  }
  *out = fd;
  return 0;
}

int mask_path(int rootfd, int devnull, const char* path) {
  int fd = open_in_root(rootfd, path, O_PATH | O_NOFOLLOW);
  if (fd < 0 && g_status.err == ENOENT) return 0;  // nothing there to hide
  if (fd < 0) return err_context("masking %s", path);
  struct stat st;
  int rc;
  if (fstat(fd, &st) < 0) rc = fail(errno, "fstat", path, "inspecting %s", path);
  else if (S_ISDIR(st.st_mode)) rc = mount_at("tmpfs", fd, "tmpfs", MS_RDONLY, nullptr, path);
  else { FdPath n(devnull); rc = mount_at(n.s, fd, nullptr, MS_BIND, nullptr, path); }
  close(fd);
  return rc;
}

int readonly_path(int rootfd, const char* path) {
  int fd = open_in_root(rootfd, path, O_PATH | O_NOFOLLOW);
  if (fd < 0 && g_status.err == ENOENT) return 0;
  if (fd < 0) return err_context("making %s read-only", path);
  FdPath p(fd);
  int rc = mount_at(p.s, fd, nullptr, MS_BIND | MS_REC, nullptr, path);
  close(fd);
  if (rc < 0) return -1;
  return remount_bind(path, MS_RDONLY);
}

int write_sysctl(const Sysctl* s) {
  char path[512] = "/proc/sys/";
  size_t n = strlen(path);
  for (const char* k = s->key; *k && n < sizeof path - 1; k++) path[n++] = (*k == '.') ? '/' : *k;
  path[n] = 0;
  if (strstr(s->key, "..") || strchr(s->key, '/'))
    return fail(EINVAL, "open", path, "invalid sysctl name %s", s->key);
  if (write_string_file(path, s->value) < 0) return err_context("setting sysctl %s", s->key);
  return 0;
}

}  // namespace

int open_in_root(int rootfd, const char* path, int flags) {
  int fd = static_cast<int>(sys_openat2(rootfd, path, flags | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS));
  if (fd < 0) return fail(errno, "openat2", path, "opening %s inside the rootfs", path);
  return fd;
}

int setup_rootfs(const Config* cfg) {
  if (set_root_propagation(cfg) < 0 || mount_rootfs(cfg) < 0) return -1;
  for (size_t i = 0; i < cfg->n_mounts; i++)
    if (mount_one(&cfg->mounts[i]) < 0) return err_context("mount %s", cfg->mounts[i].destination);
  for (size_t i = 0; i < cfg->n_devices; i++)
    if (create_device(&cfg->devices[i]) < 0) return -1;
  if (create_default_devices(cfg) < 0) return -1;
  if (create_dev_symlinks() < 0) return -1;
  return ensure_cwd(cfg);
}

int pivot_into_rootfs(const Config* cfg) {
  if (fchdir(g_rootfd) < 0) return fail(errno, "fchdir", cfg->root_path, "entering the rootfs");
  // pivot_root(".", ".") stacks the old root on top of the new one; detaching it right
  // away leaves no directory to create or remove (pivot_root(2) NOTES, as runc does).
  if (syscall(SYS_pivot_root, ".", ".") < 0) return fail(errno, "pivot_root", cfg->root_path, "pivoting into the rootfs");
  if (umount2(".", MNT_DETACH) < 0) return fail(errno, "umount2", "/", "detaching the old root");
  if (chdir("/") < 0) return fail(errno, "chdir", "/", "entering the new root");
  close(g_rootfd);
  g_rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (g_rootfd < 0) return fail(errno, "open", "/", "opening the new root");
  return 0;
}

int finish_rootfs(const Config* cfg) {
  for (size_t i = 0; i < cfg->n_sysctls; i++)
    if (write_sysctl(&cfg->sysctls[i]) < 0) return -1;
  if (cfg->n_masked) {
    int devnull = -1;
    if (check_dev_null(g_rootfd, &devnull) < 0) return -1;
    for (size_t i = 0; i < cfg->n_masked; i++)
      if (mask_path(g_rootfd, devnull, cfg->masked_paths[i]) < 0) { close(devnull); return -1; }
    close(devnull);
  }
  for (size_t i = 0; i < cfg->n_readonly; i++)
    if (readonly_path(g_rootfd, cfg->readonly_paths[i]) < 0) return -1;
  if (cfg->root_readonly && remount_bind("/", MS_RDONLY) < 0) return err_context("making / read-only");
  close(g_rootfd);
  g_rootfd = -1;
  return 0;
}

}  // namespace shim
