// exec joins the container's namespaces through a pidfd of its first process (setns(2)
// with a pidfd joins several namespaces atomically, Linux >= 5.8), joins its cgroups,
// then forks so the new process lands in the container's pid namespace, and applies the
// same user, capabilities and no_new_privs as the container. Its stdout/stderr are ours;
// its exit status becomes ours. Errors are written as JSON on fd 3 when open.
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "container.h"
#include "process.h"
#include "supervisor.h"
#include "util.h"

namespace shim {

namespace {

const int kErrorFd = 3;

void report_error() {
  char json[2048];
  size_t n = status_json(json, sizeof json);
  int fd = fcntl(kErrorFd, F_GETFD) >= 0 ? kErrorFd : 2;
  // If even this fails there is no channel left; the exit code still reports failure.
  if (write_all(fd, json, n) < 0) return;
}

const char* flag_value(int argc, char** argv, const char* name) {
  for (int i = 2; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return nullptr;
}

// Opens a pidfd and proves it is the process TypeScript meant: a pid alone may have been
// reused, pid + start time may not (the pidfd pins the process from here on).
int open_target(pid_t pid, unsigned long long start_time) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return fail(errno, "pidfd_open", "", "opening container process %d", pid);
  unsigned long long actual = 0;
  if (proc_start_time(pid, &actual) < 0) { close(fd); return err_context("checking container process %d", pid); }
  if (actual != start_time) {
    close(fd);
    return fail(ESRCH, "pidfd_open", "", "process %d is not the container's (start time %llu, expected %llu)", pid,
                actual, start_time);
  }
  return fd;
}

int join_cgroups_self(const Config* cfg) {
  if (!cfg->cgroup_dirs || !*cfg->cgroup_dirs) return 0;
  char* dirs = xstrdup(cfg->cgroup_dirs);
  if (!dirs) return fail(ENOMEM, "malloc", "", "copying cgroup dirs");
  char pid[16];
  snprintf(pid, sizeof pid, "%d", getpid());
  int rc = 0;
  char* save = nullptr;
  for (char* d = strtok_r(dirs, ":", &save); d && rc == 0; d = strtok_r(nullptr, ":", &save)) {
    char path[1024];
    snprintf(path, sizeof path, "%s/cgroup.procs", d);
    rc = write_string_file(path, pid);
  }
  free(dirs);
  return rc;
}

int join_container(int pidfd) {
  int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
  if (setns(pidfd, flags) < 0) return fail(errno, "setns", "", "joining the container's namespaces");
  return 0;
}

struct ExecIo {
  int sync[2] = {-1, -1};
  int master = -1;
  int slave = -1;
  int signal_fd = -1;
};

[[noreturn]] void child(const Config* cfg, ExecIo* io) {
  close(io->sync[0]);
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) < 0) { fail(errno, "sigprocmask", "", "unblocking signals"); child_fail(io->sync[1]); }
  if (io->slave >= 0 && become_tty_session(io->slave) < 0) child_fail(io->sync[1]);
  finalize_and_exec(&cfg->process);
  child_fail(io->sync[1]);
}

// Copies the terminal both ways until the child is gone: our stdin → master, master → stdout.
void relay_tty(ExecIo* io, pid_t pid, int* status) {
  bool exited = false, in_open = true;
  while (io->master >= 0) {
    struct pollfd p[3] = {{io->signal_fd, POLLIN, 0}, {io->master, POLLIN, 0}, {in_open ? 0 : -1, POLLIN, 0}};
    if (poll(p, 3, -1) < 0 && errno != EINTR) break;
    char buf[4096];
    if (p[1].revents) {
      ssize_t n = read(io->master, buf, sizeof buf);
      if (n <= 0) { close(io->master); io->master = -1; }
      else if (write_all(1, buf, static_cast<size_t>(n)) < 0) in_open = false;
    }
    if (p[2].revents) {
      ssize_t n = read(0, buf, sizeof buf);
      if (n <= 0) in_open = false;
      else if (write_all(io->master, buf, static_cast<size_t>(n)) < 0) in_open = false;
    }
    if (p[0].revents) {
      struct signalfd_siginfo si;
      if (read(io->signal_fd, &si, sizeof si) == static_cast<ssize_t>(sizeof si) && si.ssi_signo != SIGCHLD) kill(pid, static_cast<int>(si.ssi_signo));
      if (!exited && waitpid(pid, status, WNOHANG) == pid) exited = true;
    }
  }
  if (!exited) waitpid(pid, status, 0);
}

void wait_forwarding(ExecIo* io, pid_t pid, int* status) {
  for (;;) {
    struct signalfd_siginfo si;
    ssize_t n = read(io->signal_fd, &si, sizeof si);
    if (n < 0 && errno == EINTR) continue;
    if (n == static_cast<ssize_t>(sizeof si) && si.ssi_signo != SIGCHLD) kill(pid, static_cast<int>(si.ssi_signo));
    if (waitpid(pid, status, WNOHANG) == pid) return;
  }
}

int read_child_error(int fd) {
  char buf[2048];
  size_t used = 0;
  for (;;) {
    ssize_t n = read(fd, buf + used, sizeof buf - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || used + static_cast<size_t>(n) >= sizeof buf - 1) break;
    used += static_cast<size_t>(n);
  }
  if (used == 0) return 0;
  buf[used] = 0;
  int fd3 = fcntl(kErrorFd, F_GETFD) >= 0 ? kErrorFd : 2;
  // The child already formatted its error; pass it through unchanged ('E' tag dropped).
  if (write_all(fd3, buf + 1, used - 1) < 0) return 1;
  return 1;
}

int run_exec(const Config* cfg, pid_t target, unsigned long long start) {
  int pidfd = open_target(target, start);
  if (pidfd < 0) return -1;
  if (join_cgroups_self(cfg) < 0 || join_container(pidfd) < 0) { close(pidfd); return -1; }
  close(pidfd);
  ExecIo io;
  if (pipe2(io.sync, O_CLOEXEC) < 0) return fail(errno, "pipe2", "", "creating the sync pipe");
  if (cfg->process.terminal && open_pty(&io.master, &io.slave) < 0) return -1;
  sigset_t set;
  supervisor_signals(&set);
  if (sigprocmask(SIG_BLOCK, &set, nullptr) < 0) return fail(errno, "sigprocmask", "", "blocking signals");
  io.signal_fd = signalfd(-1, &set, SFD_CLOEXEC);
  if (io.signal_fd < 0) return fail(errno, "signalfd", "", "creating the signal fd");
  pid_t pid = fork();
  if (pid < 0) return fail(errno, "fork", "", "starting the exec process");
  if (pid == 0) child(cfg, &io);
  close(io.sync[1]);
  if (io.slave >= 0) close(io.slave);
  int status = 0;
  if (read_child_error(io.sync[0])) {
    waitpid(pid, &status, 0);
    return -2;
  }
  if (io.master >= 0) relay_tty(&io, pid, &status);
  else wait_forwarding(&io, pid, &status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

int cmd_exec(int argc, char** argv) {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
    fail(errno, "prctl", "", "PR_SET_DUMPABLE");
    report_error();
    return 255;
  }
  const char* pid = flag_value(argc, argv, "--pid");
  const char* start = flag_value(argc, argv, "--start-time");
  const char* process = flag_value(argc, argv, "--process");
  if (!pid || !start || !process) {
    fail(EINVAL, "", "", "usage: d2p-shim exec --pid PID --start-time TICKS --process FILE");
    report_error();
    return 255;
  }
  static Config cfg;
  if (process_load(process, &cfg) < 0 || load_cap_last_cap() < 0) {
    report_error();
    return 255;
  }
  int rc = run_exec(&cfg, static_cast<pid_t>(atoi(pid)), strtoull(start, nullptr, 10));
  if (rc == -1) report_error();
  return rc < 0 ? 255 : rc;
}

}  // namespace shim
