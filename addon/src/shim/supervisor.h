// The long-lived half of the shim (the conmon role): it started the container, and now
// records its state, copies its output to the json-file log and forwards signals.
#pragma once
#include <signal.h>
#include <sys/types.h>

#include "attach.h"

namespace shim {

struct State {
  const char* id;
  const char* bundle;
  const char* state_dir;
  pid_t shim_pid;
  unsigned long long shim_start;
  pid_t pid;
  unsigned long long pid_start;
  const char* status;  // "created" | "running" | "stopped"
  bool exited;
  int exit_code;
  int signal;
  bool oom_killed;
  char started_at[40];
  char finished_at[40];
  char log_error[256];
};

int write_state(const State* s);

struct Supervision {
  State* state;
  int log_fd;
  int stdout_fd;  // read end of the workload's stdout (or the pty master)
  int stderr_fd;  // read end of stderr, -1 with a terminal
  int signal_fd;
  char* cgroup_memory;  // for OOM detection, may be null
  // json-file rotation as Docker's driver (daemon/logger/loggerutils): before a record
  // is written, a log of max_size bytes or more is rotated; 0 = never.
  const char* log_path;
  long long log_max_size;
  long long log_max_file;
  long long log_size;  // bytes in the current file
  Attach* attach;      // null when neither a terminal nor stdin is attachable
};

// Runs until the workload exited and its output is drained; returns the shim exit code.
int supervise(Supervision* s);
// Signals the supervisor blocks and forwards (plus SIGCHLD, which it handles).
void supervisor_signals(sigset_t* set);

}  // namespace shim
