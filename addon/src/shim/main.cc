// d2p-shim: creates one container from an OCI bundle and stays as its supervisor.
//
//   d2p-shim run  --bundle DIR --state-dir DIR --log FILE --id ID
//   d2p-shim exec --pid PID --start-time TICKS --process FILE
//
// run: the process TypeScript spawns ("A") forks the supervisor ("B"), which starts a new
// session, clones the container ("C") and reports back; A exits 0 once C has exec'ed, or
// prints the error as one JSON line on stdout and exits 1. B outlives A and the daemon.
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "container.h"
#include "exec.h"
#include "supervisor.h"
#include "util.h"

using namespace shim;

namespace {

struct RunArgs {
  const char* bundle = nullptr;
  const char* state_dir = nullptr;
  const char* log = nullptr;
  const char* id = nullptr;
};

// Everything B prepares before cloning C; the child only uses what is in here.
struct Launch {
  Config cfg;
  int sync[2] = {-1, -1};
  int out[2] = {-1, -1};
  int err[2] = {-1, -1};
  int in[2] = {-1, -1};  // stdin pipe when stdin is open (docker run -i)
  int devnull = -1;
  int log_fd = -1;
  int signal_fd = -1;
  int pty_master = -1;
  State state;
  Attach attach;
};

const char* flag_value(int argc, char** argv, const char* name) {
  for (int i = 2; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return nullptr;
}

int parse_run_args(int argc, char** argv, RunArgs* a) {
  a->bundle = flag_value(argc, argv, "--bundle");
  a->state_dir = flag_value(argc, argv, "--state-dir");
  a->log = flag_value(argc, argv, "--log");
  a->id = flag_value(argc, argv, "--id");
  if (!a->bundle || !a->state_dir || !a->log || !a->id)
    return fail(EINVAL, "", "", "usage: d2p-shim run --bundle DIR --state-dir DIR --log FILE --id ID");
  return 0;
}

int report_json(int fd) {
  char json[2048];
  size_t n = status_json(json, sizeof json);
  return write_all(fd, json, n);
}

int open_files(Launch* l, const RunArgs* a) {
  l->devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (l->devnull < 0) return fail(errno, "open", "/dev/null", "opening /dev/null");
  l->log_fd = open(a->log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (l->log_fd < 0) return fail(errno, "open", a->log, "opening the container log");
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, l->sync) < 0)
    return fail(errno, "socketpair", "", "creating the sync channel");
  if (!l->cfg.process.terminal && (pipe2(l->out, O_CLOEXEC) < 0 || pipe2(l->err, O_CLOEXEC) < 0))
    return fail(errno, "pipe2", "", "creating the output pipes");
  if (!l->cfg.process.terminal && l->cfg.stdin_open && pipe2(l->in, O_CLOEXEC) < 0)
    return fail(errno, "pipe2", "", "creating the stdin pipe");
  sigset_t set;
  supervisor_signals(&set);
  // Blocked before the clone so no signal is lost in between; the child unblocks.
  if (sigprocmask(SIG_BLOCK, &set, nullptr) < 0) return fail(errno, "sigprocmask", "", "blocking signals");
  l->signal_fd = signalfd(-1, &set, SFD_CLOEXEC);
  if (l->signal_fd < 0) return fail(errno, "signalfd", "", "creating the signal fd");
  return 0;
}

int clone_flags(const Config* cfg, unsigned long* flags) {
  *flags = SIGCHLD;
  for (size_t i = 0; i < cfg->n_namespaces; i++) {
    const Namespace* ns = &cfg->namespaces[i];
    if (ns->path || ns->flag == CLONE_NEWCGROUP) continue;  // joined/unshared by the child
    *flags |= static_cast<unsigned long>(ns->flag);
  }
  if (!(*flags & CLONE_NEWNS)) return fail(EINVAL, "clone", "", "linux.namespaces must include a new mount namespace");
  return 0;
}

// Reads C's report: EOF alone means execve succeeded (the socket was close-on-exec);
// 'T' carries the pty master; 'E' is followed by the error JSON.
int await_exec(Launch* l, char* error, size_t cap) {
  size_t used = 0;
  error[0] = 0;
  for (;;) {
    char buf[512];
    char ctrl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl;
    msg.msg_controllen = sizeof ctrl;
    ssize_t n = recvmsg(l->sync[0], &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(errno, "recvmsg", "", "waiting for the container to start");
    if (n == 0) break;
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&l->pty_master, CMSG_DATA(c), sizeof(int));
    size_t take = static_cast<size_t>(n) < cap - 1 - used ? static_cast<size_t>(n) : cap - 1 - used;
    memcpy(error + used, buf, take);
    used += take;
    error[used] = 0;
  }
  const char* e = strchr(error, 'E');
  if (e) {
    memmove(error, e + 1, strlen(e + 1) + 1);
    return 1;
  }
  return 0;
}

int start_state(Launch* l, const RunArgs* a, pid_t child) {
  State* s = &l->state;
  memset(s, 0, sizeof *s);
  s->id = a->id;
  s->bundle = a->bundle;
  s->state_dir = a->state_dir;
  s->shim_pid = getpid();
  s->pid = child;
  s->status = "created";
  if (proc_start_time(s->shim_pid, &s->shim_start) < 0 || proc_start_time(child, &s->pid_start) < 0) return -1;
  return write_state(s);
}

void close_fd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

// B: clones C, reports to A over status_fd, then supervises. Returns B's exit code.
int run_supervisor(Launch* l, const RunArgs* a, int status_fd) {
  unsigned long flags;
  if (open_files(l, a) < 0 || clone_flags(&l->cfg, &flags) < 0) return report_json(status_fd), 1;
  // A raw clone(2) without a new stack behaves like fork(2), but can create the pid
  // namespace in the same step so the child is its PID 1.
  pid_t child = static_cast<pid_t>(syscall(SYS_clone, flags, nullptr, nullptr, nullptr, 0));
  if (child < 0) return fail(errno, "clone", "", "creating the container process"), report_json(status_fd), 1;
  if (child == 0) {
    close_fd(&l->sync[0]);
    close_fd(&l->in[1]);
    InitArgs ia = {&l->cfg, l->sync[1], l->in[0] >= 0 ? l->in[0] : l->devnull, l->out[1], l->err[1]};
    container_init(&ia);
  }
  close_fd(&l->sync[1]);
  close_fd(&l->out[1]);
  close_fd(&l->err[1]);
  close_fd(&l->in[0]);
  char error[2048];
  int started = -1;
  // The child joins its cgroups itself, first thing after "g" (container_init).
  if (start_state(l, a, child) == 0 && write_all(l->sync[0], "g", 1) == 0)
    started = await_exec(l, error, sizeof error);
  close_fd(&l->sync[0]);
  if (started != 0) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    if (started < 0) report_json(status_fd);
    else write_all(status_fd, error, strlen(error));
    return 1;
  }
  bool tty = l->cfg.process.terminal;
  // Listening before "running" is recorded: whoever sees the container run can attach.
  Attach* attach = nullptr;
  if (tty || l->cfg.stdin_open) {
    l->attach.tty = tty;
    l->attach.input_fd = tty ? l->pty_master : l->in[1];
    if (attach_listen(&l->attach, a->state_dir) < 0) return kill(child, SIGKILL), report_json(status_fd), 1;
    attach = &l->attach;
  }
  format_timestamp(l->state.started_at, sizeof l->state.started_at);
  l->state.status = "running";
  if (write_state(&l->state) < 0) return kill(child, SIGKILL), report_json(status_fd), 1;
  Supervision sv = {&l->state, l->log_fd, tty ? l->pty_master : l->out[0], tty ? -1 : l->err[0], l->signal_fd,
                    xstrdup(l->cfg.cgroup_memory), a->log, l->cfg.log_max_size, l->cfg.log_max_file, 0, attach};
  if (write_all(status_fd, "ok\n", 3) < 0) return 1;
  close(status_fd);
  // The parsed config is not needed while supervising; give its memory back (RSS budget).
  config_free(&l->cfg);
  malloc_trim(0);
  int rc = supervise(&sv);
  free(sv.cgroup_memory);
  return rc < 0 ? 1 : 0;
}

int detach_from_caller() {
  if (setsid() < 0) return fail(errno, "setsid", "", "starting a new session");
  if (chdir("/") < 0) return fail(errno, "chdir", "/", "leaving the caller's directory");
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) return fail(errno, "open", "/dev/null", "opening /dev/null");
  // Holding the caller's stdout would keep its pipe open until the container exits.
  if (dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) return fail(errno, "dup2", "", "detaching stdio");
  close(null);
  return 0;
}

// A: waits for B's report and turns it into an exit code and a JSON line on stdout.
int relay_report(int fd, pid_t supervisor) {
  char buf[2048];
  size_t used = read_until_eof(fd, buf, sizeof buf);
  if (strcmp(buf, "ok\n") == 0) return 0;
  if (used == 0) {
    int status = 0;
    waitpid(supervisor, &status, WNOHANG);
    fail(EPIPE, "read", "", "the supervisor exited without reporting (status %d)", status);
    report_json(1);
    return 1;
  }
  write_all(1, buf, used);
  return 1;
}

int cmd_run(int argc, char** argv) {
  static Launch l;
  RunArgs a;
  // Non-dumpable before any container namespace exists: /proc/<pid> of the shim stays
  // root-owned and unptraceable from inside (CVE-2019-5736 class).
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) fail(errno, "prctl", "", "PR_SET_DUMPABLE");
  else if (parse_run_args(argc, argv, &a) == 0) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", a.bundle);
    if (config_load(path, &l.cfg) == 0) {
      int status[2];
      if (pipe2(status, O_CLOEXEC) < 0) return fail(errno, "pipe2", "", "creating the status pipe"), report_json(1), 1;
      pid_t b = fork();
      if (b < 0) return fail(errno, "fork", "", "starting the supervisor"), report_json(1), 1;
      if (b == 0) {
        close(status[0]);
        if (detach_from_caller() < 0) return report_json(status[1]), 1;
        return run_supervisor(&l, &a, status[1]);
      }
      close(status[1]);
      return relay_report(status[0], b);
    }
  }
  report_json(1);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "run") == 0) return cmd_run(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "exec") == 0) return cmd_exec(argc, argv);
  fail(EINVAL, "", "", "usage: d2p-shim run|exec ...");
  report_json(2);
  return 2;
}
