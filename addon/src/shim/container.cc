#include "container.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "process.h"
#include "rootfs.h"
#include "util.h"

namespace shim {

namespace {

int wait_for_go(int sync_fd) {
  char go = 0;
  ssize_t n;
  do n = read(sync_fd, &go, 1);
  while (n < 0 && errno == EINTR);
  if (n != 1 || go != 'g') return fail(n < 0 ? errno : EPIPE, "read", "", "supervisor went away before start");
  return 0;
}

int join_namespaces(const Config* cfg) {
  const char* path = nullptr;
  // Joining the cgroup namespace only after the supervisor moved us into our cgroup makes
  // that cgroup the namespace root (cgroup_namespaces(7)).
  if (config_has_ns(cfg, CLONE_NEWCGROUP, &path) && !path && unshare(CLONE_NEWCGROUP) < 0)
    return fail(errno, "unshare", "cgroup", "creating the cgroup namespace");
  for (size_t i = 0; i < cfg->n_namespaces; i++) {
    const Namespace* ns = &cfg->namespaces[i];
    if (!ns->path) continue;
    if (ns->flag == CLONE_NEWPID || ns->flag == CLONE_NEWNS)
      return fail(EINVAL, "setns", ns->path, "joining an existing pid or mount namespace is not supported");
    int fd = open(ns->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(errno, "open", ns->path, "opening namespace %s", ns->path);
    int rc = setns(fd, ns->flag);
    int e = errno;
    close(fd);
    if (rc < 0) return fail(e, "setns", ns->path, "joining namespace %s", ns->path);
  }
  return 0;
}

int set_names(const Config* cfg) {
  if (cfg->hostname && sethostname(cfg->hostname, strlen(cfg->hostname)) < 0)
    return fail(errno, "sethostname", cfg->hostname, "setting the hostname");
  if (cfg->domainname && setdomainname(cfg->domainname, strlen(cfg->domainname)) < 0)
    return fail(errno, "setdomainname", cfg->domainname, "setting the domain name");
  return 0;
}

int setup_stdio(const InitArgs* a) {
  if (a->cfg->process.terminal) {
    int master, slave;
    if (open_pty(&master, &slave) < 0) return -1;
    const Process* p = &a->cfg->process;
    if (set_window_size(master, p->console_width, p->console_height) < 0) return -1;
    if (send_fd(a->sync_fd, 'T', master) < 0) return -1;
    close(master);
    return become_tty_session(slave);
  }
  if (dup2(a->stdin_fd, 0) < 0 || dup2(a->stdout_fd, 1) < 0 || dup2(a->stderr_fd, 2) < 0)
    return fail(errno, "dup2", "", "connecting stdio");
  return 0;
}

}  // namespace

void child_fail(int fd) {
  char json[2048];
  json[0] = 'E';
  size_t n = status_json(json + 1, sizeof json - 1);
  // Nothing more can be done if the supervisor is gone; the exit code still says failure.
  if (write_all(fd, json, n + 1) < 0) _exit(126);
  _exit(127);
}

int open_pty(int* master, int* slave) {
  int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0) return fail(errno, "open", "/dev/ptmx", "opening the container's pty multiplexer");
  int unlock = 0;
  if (ioctl(m, TIOCSPTLCK, &unlock) < 0) { int e = errno; close(m); return fail(e, "ioctl", "/dev/ptmx", "unlocking the pty"); }
  // TIOCGPTPEER opens the peer through the master's own devpts instance, so no path lookup
  // can be redirected (ioctl_tty(2), added for exactly this in Linux 4.13).
  int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (s < 0) { int e = errno; close(m); return fail(e, "ioctl", "/dev/ptmx", "opening the pty peer"); }
  *master = m;
  *slave = s;
  return 0;
}

int set_window_size(int master, long long cols, long long rows) {
  if (cols <= 0 || rows <= 0) return 0;
  struct winsize ws;
  memset(&ws, 0, sizeof ws);
  ws.ws_col = static_cast<unsigned short>(cols);
  ws.ws_row = static_cast<unsigned short>(rows);
  if (ioctl(master, TIOCSWINSZ, &ws) < 0) return fail(errno, "ioctl", "TIOCSWINSZ", "setting the terminal size");
  return 0;
}

int become_tty_session(int slave) {
  if (setsid() < 0) return fail(errno, "setsid", "", "starting a session for the terminal");
  if (ioctl(slave, TIOCSCTTY, 0) < 0) return fail(errno, "ioctl", "", "setting the controlling terminal");
  if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0)
    return fail(errno, "dup2", "", "connecting the terminal");
  if (slave > 2) close(slave);
  return 0;
}

int send_fd(int sock, char tag, int fd) {
  char buf[CMSG_SPACE(sizeof(int))];
  memset(buf, 0, sizeof buf);
  struct iovec iov = {&tag, 1};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = buf;
  msg.msg_controllen = sizeof buf;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) return fail(errno, "sendmsg", "", "passing the terminal to the supervisor");
  return 0;
}

void container_init(const InitArgs* a) {
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) < 0) {
    fail(errno, "sigprocmask", "", "unblocking signals");
    child_fail(a->sync_fd);
  }
  const Config* cfg = a->cfg;
  if (wait_for_go(a->sync_fd) < 0) _exit(1);
  // Its cgroups before anything it does is accounted, and before the cgroup namespace
  // (join_namespaces), whose root is the cgroup it is in when it is made.
  if (join_own_cgroups(cfg) < 0 || join_namespaces(cfg) < 0 || load_cap_last_cap() < 0 || set_names(cfg) < 0 || setup_rootfs(cfg) < 0 ||
      pivot_into_rootfs(cfg) < 0 || finish_rootfs(cfg) < 0 || setup_stdio(a) < 0)
    child_fail(a->sync_fd);
  finalize_and_exec(&cfg->process);
  child_fail(a->sync_fd);
}

}  // namespace shim
