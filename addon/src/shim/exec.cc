// exec joins the container's namespaces through a pidfd of its first process (setns(2)
// with a pidfd joins several namespaces atomically, Linux >= 5.8), joins its cgroups,
// then forks so the new process lands in the container's pid namespace, and applies the
// same user, capabilities and no_new_privs as the container. Its stdout/stderr are ours;
// its exit status becomes ours. Errors are written as JSON on fd 3 when open; fd 4, when
// open, carries control lines from TypeScript ("resize COLS ROWS", "kill SIGNUM").
// With process.terminal the pty is opened inside the container and we relay it.
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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

int join_container(int pidfd) {
  int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
  if (setns(pidfd, flags) < 0) return fail(errno, "setns", "", "joining the container's namespaces");
  return 0;
}

const int kControlFd = 4;
// Checked first thing in cmd_exec, before any fd of ours could take the number 4.
int g_control_fd = -1;

struct ExecIo {
  int sync[2] = {-1, -1};
  int master = -1;
  int slave = -1;
  int signal_fd = -1;
  int out[2] = {-1, -1};  // without a terminal: the process's stdout and stderr pipes,
  int err[2] = {-1, -1};  // relayed by us so the session ends when the process does
  int control = -1;  // fd 4 when TypeScript opened it: "resize C R" and "kill N" lines
  char line[64];     // a control line being received
  size_t line_len = 0;
};

[[noreturn]] void child(const Config* cfg, ExecIo* io) {
  close(io->sync[0]);
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) < 0) { fail(errno, "sigprocmask", "", "unblocking signals"); child_fail(io->sync[1]); }
  if (io->slave >= 0 && become_tty_session(io->slave) < 0) child_fail(io->sync[1]);
  if (io->slave < 0 && (dup2(io->out[1], 1) < 0 || dup2(io->err[1], 2) < 0)) {
    fail(errno, "dup2", "", "connecting stdout and stderr");
    child_fail(io->sync[1]);
  }
  finalize_and_exec(&cfg->process);
  child_fail(io->sync[1]);
}

// One control line. A malformed line is TypeScript's bug: reported on stderr of the
// shim, never fatal for the user's process.
void handle_control_line(ExecIo* io, pid_t pid, bool exited, const char* line) {
  long long a = 0, b = 0;
  if (sscanf(line, "resize %lld %lld", &a, &b) == 2) {
    if (io->master >= 0 && a > 0 && a <= 65535 && b > 0 && b <= 65535 && set_window_size(io->master, a, b) < 0) report_error();
    return;
  }
  if (sscanf(line, "kill %lld", &a) == 1 && a > 0 && a < 65) {
    if (!exited && kill(pid, static_cast<int>(a)) < 0 && errno != ESRCH) {
      fail(errno, "kill", "", "signalling the exec process %d", pid);
      report_error();
    }
    return;
  }
  fail(EINVAL, "read", "control", "unknown exec control line \"%.40s\"", line);
  report_error();
}

void read_control(ExecIo* io, pid_t pid, bool exited) {
  char buf[256];
  ssize_t n = read(io->control, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {  // TypeScript closed it: nothing more will be asked
    close(io->control);
    io->control = -1;
    return;
  }
  for (ssize_t i = 0; i < n; i++) {
    if (buf[i] != '\n') {
      if (io->line_len < sizeof io->line - 1) io->line[io->line_len++] = buf[i];
      continue;
    }
    io->line[io->line_len] = 0;
    io->line_len = 0;
    handle_control_line(io, pid, exited, io->line);
  }
}

bool reap(ExecIo* io, pid_t pid, int* status) {
  struct signalfd_siginfo si;
  ssize_t n = read(io->signal_fd, &si, sizeof si);
  if (n == static_cast<ssize_t>(sizeof si) && si.ssi_signo != SIGCHLD) kill(pid, static_cast<int>(si.ssi_signo));
  return waitpid(pid, status, WNOHANG) == pid;
}

// Moves bytes one way; false when the source ended or the sink failed.
bool pump(int from, int to) {
  char buf[4096];
  ssize_t n = read(from, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  // EIO on a master means every slave closed (pty(7)): the end of the output, not an error.
  if (n <= 0) return false;
  return write_all(to, buf, static_cast<size_t>(n)) == 0;
}

// Output the process wrote before it exited is delivered; a background process still
// holding the terminal or pipe does not keep the session open (docker exec ends with its
// process too), so reading stops at the first empty read.
void drain_output(int* fd, int to) {
  if (*fd < 0) return;
  fcntl(*fd, F_SETFL, fcntl(*fd, F_GETFL) | O_NONBLOCK);
  while (pump(*fd, to)) {
    struct pollfd p = {*fd, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0) break;
  }
  close(*fd);
  *fd = -1;
}

void relay(int* from, int to) {
  if (!pump(*from, to)) {
    close(*from);
    *from = -1;
  }
}

// Runs until the process exited: forwards signals and control lines, copies its output
// to ours and, with a terminal, our stdin to the master.
void supervise_exec(ExecIo* io, pid_t pid, int* status) {
  bool exited = false, in_open = io->master >= 0;
  int* const out = io->master >= 0 ? &io->master : &io->out[0];
  while (!exited) {
    struct pollfd p[5] = {{io->signal_fd, POLLIN, 0}, {io->control, POLLIN, 0}, {*out, POLLIN, 0},
                          {io->err[0], POLLIN, 0}, {in_open ? 0 : -1, POLLIN, 0}};
    if (poll(p, 5, -1) < 0) {
      if (errno == EINTR) continue;
      fail(errno, "poll", "", "waiting for the exec process");
      report_error();
      break;
    }
    if (p[2].revents) relay(out, 1);
    if (p[3].revents) relay(&io->err[0], 2);
    if (p[4].revents && !pump(0, io->master)) in_open = false;
    if (p[1].revents) read_control(io, pid, exited);
    if (p[0].revents) exited = reap(io, pid, status);
  }
  if (!exited) waitpid(pid, status, 0);
  drain_output(out, 1);
  drain_output(&io->err[0], 2);
}

int read_child_error(int fd) {
  char buf[2048];
  size_t used = read_until_eof(fd, buf, sizeof buf);
  if (used == 0) return 0;
  int fd3 = fcntl(kErrorFd, F_GETFD) >= 0 ? kErrorFd : 2;
  // The child already formatted its error; pass it through unchanged ('E' tag dropped).
  if (write_all(fd3, buf + 1, used - 1) < 0) return 1;
  return 1;
}

int run_exec(const Config* cfg, pid_t target, unsigned long long start) {
  int pidfd = open_target(target, start);
  if (pidfd < 0) return -1;
  if (join_own_cgroups(cfg) < 0 || join_container(pidfd) < 0) { close(pidfd); return -1; }
  close(pidfd);
  ExecIo io;
  if (pipe2(io.sync, O_CLOEXEC) < 0) return fail(errno, "pipe2", "", "creating the sync pipe");
  if (cfg->process.terminal) {
    // After setns(CLONE_NEWNS) "/" is the container's root, so this is the container's own
    // devpts instance (newinstance, DESIGN.md §4): the pty is /dev/pts/N inside it.
    if (open_pty(&io.master, &io.slave) < 0) return -1;
    if (set_window_size(io.master, cfg->process.console_width, cfg->process.console_height) < 0) return -1;
  }
  io.control = g_control_fd;
  if (!cfg->process.terminal && (pipe2(io.out, O_CLOEXEC) < 0 || pipe2(io.err, O_CLOEXEC) < 0))
    return fail(errno, "pipe2", "", "creating the output pipes");
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
  if (io.out[1] >= 0) close(io.out[1]);
  if (io.err[1] >= 0) close(io.err[1]);
  int status = 0;
  if (read_child_error(io.sync[0])) {
    waitpid(pid, &status, 0);
    return -2;
  }
  supervise_exec(&io, pid, &status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

int cmd_exec(int argc, char** argv) {
  if (fcntl(kControlFd, F_GETFD) >= 0) g_control_fd = kControlFd;
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
