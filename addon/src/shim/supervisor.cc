#include "supervisor.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

namespace shim {

namespace {

// Docker's json-file driver splits lines longer than 16 KiB into partial records.
const size_t kLineMax = 16 * 1024;

struct Stream {
  int fd;
  const char* name;
  char* line;
  size_t len;
};

Buf g_record;  // reused for every log record so the heap does not grow per line

void note_log_error(Supervision* s) {
  if (!s->state->log_error[0])
    snprintf(s->state->log_error, sizeof s->state->log_error, "%.200s: %.50s", g_status.message, strerror(g_status.err));
}

// log.(N-2) → log.(N-1), …, log → log.1, then a new empty log: the names and order of
// Docker's json-file driver, so the newest records are always in the main file. With
// max-file 1 the log is truncated in place instead (O_APPEND writes restart at 0).
int rotate_log(Supervision* s) {
  if (s->log_max_file <= 1) {
    if (ftruncate(s->log_fd, 0) < 0) return fail(errno, "ftruncate", s->log_path, "truncating the log for rotation");
    s->log_size = 0;
    return 0;
  }
  char from[1100], to[1100];
  for (long long i = s->log_max_file - 1; i >= 1; i--) {
    if (i == 1) snprintf(from, sizeof from, "%s", s->log_path);
    else snprintf(from, sizeof from, "%s.%lld", s->log_path, i - 1);
    snprintf(to, sizeof to, "%s.%lld", s->log_path, i);
    // Fewer rotations than max-file so far: the older names do not exist yet.
    if (rename(from, to) < 0 && errno != ENOENT) return fail(errno, "rename", from, "rotating the log to %s", to);
  }
  int fd = open(s->log_path, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return fail(errno, "open", s->log_path, "creating the log after rotation");
  close(s->log_fd);
  s->log_fd = fd;
  s->log_size = 0;
  return 0;
}

void emit(Supervision* s, Stream* st, const char* data, size_t n) {
  char ts[40];
  format_timestamp(ts, sizeof ts);
  g_record.reset();
  bool ok = g_record.append("{\"log\":") && g_record.append_json_string(data, n) &&
            g_record.append(",\"stream\":\"") && g_record.append(st->name) && g_record.append("\",\"time\":\"") &&
            g_record.append(ts) && g_record.append("\"}\n");
  if (!ok) {
    fail(ENOMEM, "malloc", "", "formatting a log record");
    note_log_error(s);
    return;
  }
  if (s->log_max_size > 0 && s->log_size >= s->log_max_size && rotate_log(s) < 0) note_log_error(s);
  // A full disk must not stop the workload; the failure is kept in state.json instead.
  if (write_all(s->log_fd, g_record.data, g_record.len) < 0) note_log_error(s);
  else s->log_size += static_cast<long long>(g_record.len);
}

void consume(Supervision* s, Stream* st, const char* data, size_t n) {
  while (n > 0) {
    const char* nl = static_cast<const char*>(memchr(data, '\n', n));
    size_t take = nl ? static_cast<size_t>(nl - data) + 1 : n;
    if (take > kLineMax - st->len) take = kLineMax - st->len;
    memcpy(st->line + st->len, data, take);
    st->len += take;
    data += take;
    n -= take;
    if (st->line[st->len - 1] == '\n' || st->len == kLineMax) {
      emit(s, st, st->line, st->len);
      st->len = 0;
    }
  }
}

// Returns false at end of stream. EIO is how a pty master reports that every slave
// closed (pty(7)), so it is an end, not an error.
bool drain(Supervision* s, Stream* st) {
  char buf[4096];
  ssize_t n = read(st->fd, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n > 0) {
    // A terminal's output goes to attached clients as it is, and to the log as records.
    if (s->attach && s->attach->tty && st->fd == s->stdout_fd) attach_output(s->attach, buf, static_cast<size_t>(n));
    consume(s, st, buf, static_cast<size_t>(n));
    return true;
  }
  if (n < 0 && errno != EIO) {
    fail(errno, "read", st->name, "reading the workload's %s", st->name);
    note_log_error(s);
  }
  if (st->len) emit(s, st, st->line, st->len);
  st->len = 0;
  // The pty master is also where attached input goes: it must not be used once closed.
  if (s->attach && s->attach->tty && s->attach->input_fd == st->fd) s->attach->input_fd = -1;
  close(st->fd);
  st->fd = -1;
  return false;
}

// memory.events (v2) and memory.oom_control (v1, Linux >= 4.13) both count OOM kills in
// an "oom_kill N" line; the cgroup is per container, so any kill is this container's.
bool read_oom_killed(const char* cgroup_dir) {
  if (!cgroup_dir) return false;
  static const char* const files[] = {"memory.events", "memory.oom_control"};
  for (const char* f : files) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", cgroup_dir, f);
    char* text = nullptr;
    if (read_file(path, &text, nullptr) < 0) continue;  // the other cgroup version's file
    const char* line = strstr(text, "oom_kill ");
    bool killed = line && (line == text || line[-1] == '\n') && strtoull(line + 9, nullptr, 10) > 0;
    free(text);
    return killed;
  }
  return false;
}

void record_exit(Supervision* s, int status) {
  State* st = s->state;
  st->exited = true;
  if (WIFEXITED(status)) {
    st->exit_code = WEXITSTATUS(status);
  } else {
    st->signal = WTERMSIG(status);
    st->exit_code = 128 + st->signal;  // the shell's and Docker's convention
  }
  st->oom_killed = read_oom_killed(s->cgroup_memory);
  format_timestamp(st->finished_at, sizeof st->finished_at);
}

void handle_signal(Supervision* s) {
  struct signalfd_siginfo si;
  ssize_t n = read(s->signal_fd, &si, sizeof si);
  if (n != static_cast<ssize_t>(sizeof si)) return;
  if (si.ssi_signo != SIGCHLD) {
    if (!s->state->exited) kill(s->state->pid, static_cast<int>(si.ssi_signo));
    return;
  }
  int status;
  pid_t r;
  while ((r = waitpid(-1, &status, WNOHANG)) > 0)
    if (r == s->state->pid) record_exit(s, status);
}

}  // namespace

void supervisor_signals(sigset_t* set) {
  sigemptyset(set);
  static const int forwarded[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGPIPE};
  for (int sig : forwarded) sigaddset(set, sig);
}

int write_state(const State* s) {
  Buf b;
  b.append("{\"id\":");
  b.append_json_string(s->id, strlen(s->id));
  b.append(",\"bundle\":");
  b.append_json_string(s->bundle, strlen(s->bundle));
  b.appendf(",\"shimPid\":%d,\"shimStartTime\":%llu,\"pid\":%d,\"pidStartTime\":%llu,\"status\":\"%s\"",
            s->shim_pid, s->shim_start, s->pid, s->pid_start, s->status);
  if (s->exited) b.appendf(",\"exitCode\":%d", s->exit_code);
  else b.append(",\"exitCode\":null");
  if (s->signal) b.appendf(",\"signal\":%d", s->signal);
  else b.append(",\"signal\":null");
  b.appendf(",\"oomKilled\":%s", s->oom_killed ? "true" : "false");
  if (s->started_at[0]) b.appendf(",\"startedAt\":\"%s\"", s->started_at);
  else b.append(",\"startedAt\":null");
  if (s->finished_at[0]) b.appendf(",\"finishedAt\":\"%s\"", s->finished_at);
  else b.append(",\"finishedAt\":null");
  if (s->log_error[0]) {
    b.append(",\"logError\":");
    b.append_json_string(s->log_error, strlen(s->log_error));
  }
  if (!b.append("}\n")) { b.release(); return fail(ENOMEM, "malloc", "state.json", "formatting state"); }
  int rc = replace_file(s->state_dir, "state.json", b.data, b.len);
  b.release();
  return rc;
}

int supervise(Supervision* s) {
  Stream out = {s->stdout_fd, "stdout", static_cast<char*>(malloc(kLineMax)), 0};
  Stream err = {s->stderr_fd, "stderr", s->stderr_fd >= 0 ? static_cast<char*>(malloc(kLineMax)) : nullptr, 0};
  if (!out.line || (err.fd >= 0 && !err.line)) return fail(ENOMEM, "malloc", "", "allocating log buffers");
  struct stat log_st;
  if (fstat(s->log_fd, &log_st) == 0) s->log_size = log_st.st_size;  // a restart appends to the old log
  while (!s->state->exited || out.fd >= 0 || err.fd >= 0) {
    struct pollfd p[3 + kAttachPollFds] = {{s->signal_fd, POLLIN, 0}, {out.fd, POLLIN, 0}, {err.fd, POLLIN, 0}};
    if (s->attach) attach_poll_fds(s->attach, p + 3);
    else for (size_t i = 3; i < 3 + kAttachPollFds; i++) p[i] = {-1, 0, 0};
    if (poll(p, 3 + kAttachPollFds, -1) < 0) {
      if (errno == EINTR) continue;
      return fail(errno, "poll", "", "waiting for the workload");
    }
    if (p[1].revents) drain(s, &out);
    if (p[2].revents) drain(s, &err);
    if (s->attach && attach_handle(s->attach, p + 3) < 0) note_log_error(s);
    if (p[0].revents) handle_signal(s);
  }
  free(out.line);
  free(err.line);
  g_record.release();
  if (s->attach && attach_close(s->attach, s->state->state_dir) < 0) note_log_error(s);
  s->state->status = "stopped";
  return write_state(s->state);
}

}  // namespace shim
