// d2p-init: the container's PID 1 for `init: true` (Compose `init`, `docker run --init`),
// in the role of Docker's docker-init (tini).
//
//   d2p-init [--] COMMAND [ARG...]
//
// A plain workload as PID 1 has two problems: the kernel delivers no signal to it that it
// has no handler for (pid_namespaces(7), "only signals for which the init process has
// established a signal handler can be sent to it"), so `docker stop` waits out the grace
// period; and orphans are re-parented to it, so a workload that never wait(2)s leaves
// zombies. d2p-init forks the workload, forwards signals to it and reaps every child,
// then exits with the workload's status (128 + n when signal n killed it, as a shell).
//
// No threads and no signal handlers: every signal but the synchronous ones stays blocked
// and is taken with sigwaitinfo(2), so nothing here is async-signal-unsafe. Blocked
// signals are queued even for a namespace's init (kernel/signal.c sig_task_ignored()
// skips blocked signals), which is what makes forwarding from the host work.
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

// Exit codes of d2p-init itself, apart from the workload's own: 2 for a usage error (as
// getopt-based tools), 1 when supervision itself fails (tini's choice), and the shell's
// 126/127 when the command can't be executed (POSIX "Command Search and Execution").
constexpr int kExitInitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitCannotExecute = 126;
constexpr int kExitNotFound = 127;

// A synchronous signal reports a fault of this very process; blocking it would turn a
// crash into a hang (signal(7): blocking SIGSEGV etc. raised by a fault is undefined), so
// these keep their default action, as tini leaves them.
const int kSynchronousSignals[] = {SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGABRT, SIGTRAP, SIGSYS};

__attribute__((format(printf, 1, 2))) void report(const char* fmt, ...) {
  char line[1024];
  int prefix = snprintf(line, sizeof line, "d2p-init: ");
  va_list ap;
  va_start(ap, fmt);
  int body = vsnprintf(line + prefix, sizeof line - static_cast<size_t>(prefix) - 1, fmt, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(prefix) + (body < 0 ? 0 : static_cast<size_t>(body));
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  // One write(2) so the line is not interleaved with the workload's output. If stderr
  // itself fails there is nowhere left to report it; the exit code still tells.
  if (write(STDERR_FILENO, line, len) < 0) return;
}

// The command starts after an optional "--"; d2p-init has no options of its own, so any
// other leading "-..." is a mistake rather than a command name.
char** parse_command(int argc, char** argv) {
  int first = 1;
  if (first < argc && strcmp(argv[first], "--") == 0) first++;
  else if (first < argc && argv[first][0] == '-') {
    report("unknown option %s; usage: d2p-init [--] COMMAND [ARG...]", argv[first]);
    return nullptr;
  }
  if (first >= argc) {
    report("no command given; usage: d2p-init [--] COMMAND [ARG...]");
    return nullptr;
  }
  return argv + first;
}

int block_signals(sigset_t* waited, sigset_t* original) {
  if (sigfillset(waited) < 0) {
    report("sigfillset: %s", strerror(errno));
    return -1;
  }
  for (int sig : kSynchronousSignals) {
    if (sigdelset(waited, sig) < 0) {
      report("sigdelset %d: %s", sig, strerror(errno));
      return -1;
    }
  }
  if (sigprocmask(SIG_BLOCK, waited, original) < 0) {
    report("sigprocmask: blocking signals: %s", strerror(errno));
    return -1;
  }
  return 0;
}

// An ignored SIGCHLD survives execve(2) and would make the kernel reap children itself
// (waitpid(2) NOTES: "ECHILD ... if SIGCHLD is set to SIG_IGN"), losing the workload's
// exit status; whatever our parent left, we want the default.
int reset_sigchld() {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = SIG_DFL;
  if (sigemptyset(&action.sa_mask) < 0 || sigaction(SIGCHLD, &action, nullptr) < 0) {
    report("sigaction: resetting SIGCHLD: %s", strerror(errno));
    return -1;
  }
  return 0;
}

// Outside a PID namespace (a test, or a host-pid container) orphans would go to the real
// init; as a subreaper they come to us instead (prctl(2) PR_SET_CHILD_SUBREAPER). As
// PID 1 it changes nothing.
int become_subreaper() {
  if (getpid() == 1) return 0;
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
    report("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));
    return -1;
  }
  return 0;
}

// tini's isolate_child(): the workload leads its own process group and, when stdin is
// our controlling terminal, becomes its foreground group, so Ctrl-C and SIGWINCH from
// the terminal reach it directly (credentials(7), termios(3) tcsetpgrp). SIGTTOU is still
// blocked here, so tcsetpgrp from a background group is allowed.
int isolate_in_process_group() {
  if (setpgid(0, 0) < 0) {
    report("setpgid: %s", strerror(errno));
    return -1;
  }
  if (tcsetpgrp(STDIN_FILENO, getpgrp()) == 0) return 0;
  // ENOTTY: stdin is not a terminal, or not our controlling one; ENXIO: no controlling
  // terminal at all. Both mean there is no terminal to hand over.
  if (errno == ENOTTY || errno == ENXIO) return 0;
  report("tcsetpgrp: giving the terminal to the workload: %s", strerror(errno));
  return -1;
}

[[noreturn]] void run_workload(char** command, const sigset_t* original) {
  if (isolate_in_process_group() < 0) _exit(kExitInitFailure);
  if (sigprocmask(SIG_SETMASK, original, nullptr) < 0) {
    report("sigprocmask: restoring the signal mask: %s", strerror(errno));
    _exit(kExitInitFailure);
  }
  execvp(command[0], command);
  int err = errno;
  report("exec %s failed: %s", command[0], strerror(err));
  _exit(err == EACCES ? kExitCannotExecute : kExitNotFound);
}

pid_t spawn_workload(char** command, const sigset_t* original) {
  pid_t pid = fork();
  if (pid < 0) report("fork: starting %s: %s", command[0], strerror(errno));
  if (pid == 0) run_workload(command, original);
  return pid;
}

// Only the workload gets the signal, not its whole process group: that is docker-init's
// behaviour (tini without -g), and the workload decides what its own children receive.
void forward_signal(pid_t workload, int sig) {
  if (kill(workload, sig) == 0) return;
  // ESRCH: the workload is already gone; its SIGCHLD is on the way and ends the loop.
  if (errno == ESRCH) return;
  report("kill: forwarding signal %d (%s) to pid %d: %s", sig, strsignal(sig), workload, strerror(errno));
}

struct WorkloadExit {
  bool exited = false;
  int status = 0;
};

// SIGCHLD is a standard signal: several exits can arrive as one, so each wake-up reaps
// until nothing is left (waitpid(2), WNOHANG).
int reap_children(pid_t workload, WorkloadExit* out) {
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid == 0) return 0;
    if (pid < 0 && errno == ECHILD) return 0;
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) {
      report("waitpid: %s", strerror(errno));
      return -1;
    }
    if (pid == workload) {
      out->exited = true;
      out->status = status;
    }
  }
}

int exit_code_of(int status) {
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

int supervise(pid_t workload, const sigset_t* waited) {
  WorkloadExit result;
  for (;;) {
    siginfo_t info;
    int sig = sigwaitinfo(waited, &info);
    if (sig < 0 && errno == EINTR) continue;
    if (sig < 0) {
      report("sigwaitinfo: %s", strerror(errno));
      return kExitInitFailure;
    }
    if (sig != SIGCHLD) {
      forward_signal(workload, sig);
      continue;
    }
    if (reap_children(workload, &result) < 0) return kExitInitFailure;
    // Orphans still running die with us: the kernel SIGKILLs a PID namespace whose init
    // exits (pid_namespaces(7)), which is what `docker run --init` does too.
    if (result.exited) return exit_code_of(result.status);
  }
}

}  // namespace

int main(int argc, char** argv) {
  char** command = parse_command(argc, argv);
  if (!command) return kExitUsage;
  sigset_t waited;
  sigset_t original;
  if (reset_sigchld() < 0 || block_signals(&waited, &original) < 0 || become_subreaper() < 0)
    return kExitInitFailure;
  pid_t workload = spawn_workload(command, &original);
  if (workload < 0) return kExitInitFailure;
  return supervise(workload, &waited);
}
