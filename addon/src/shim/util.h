// Shared helpers of d2p-shim: an error status that carries errno plus context (crun's
// libcrun_error_t idea), checked I/O, and a tiny growable string buffer. No exceptions,
// no iostream: the supervisor must stay under 1 MiB RSS (DESIGN.md §9).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

namespace shim {

// The last error of this process. Functions return -1 after filling it; callers add
// context on the way up with err_context(), and main() writes it once, as JSON.
struct Status {
  int err;            // errno value, 0 when the failure is not a system call's
  char syscall[32];   // the failing call, e.g. "mount"
  char path[512];     // the object involved
  char message[768];  // human context, outermost first
};

extern Status g_status;

// Records a failed system call; always returns -1 so callers can `return fail(...)`.
int fail(int err, const char* syscall, const char* path, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
// Prepends context ("while mounting /proc: ") to the current message; returns -1.
int err_context(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Formats g_status as {"code","errno","syscall","path","message"} into buf.
size_t status_json(char* buf, size_t cap);

// Growable byte buffer (malloc based, freed explicitly).
struct Buf {
  char* data = nullptr;
  size_t len = 0;
  size_t cap = 0;
  bool append(const char* s, size_t n);
  bool append(const char* s);
  bool appendf(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  // Appends s as a JSON string literal, quotes included.
  bool append_json_string(const char* s, size_t n);
  void reset() { len = 0; }
  void release();
};

int write_all(int fd, const char* data, size_t len);
// Reads fd until EOF, an error or a full buffer (cap - 1 bytes) and NUL-terminates what
// it read: the short reports children send on a pipe before they exit or exec.
size_t read_until_eof(int fd, char* buf, size_t cap);
// Reads a whole (small) file; *out is malloc'ed and NUL terminated.
int read_file(const char* path, char** out, size_t* len);
// Replaces dir/name with `data` atomically (temp file, rename): a reader sees the old or
// the new content, never a part. Not synced to disk: what it records (a process's state)
// does not outlive the machine either, and each fsync was ~0.5 ms on the path from a
// container's exit to the daemon hearing of it.
int replace_file(const char* dir, const char* name, const char* data, size_t len);
// Writes a short string to an existing file (cgroup/proc knobs).
int write_string_file(const char* path, const char* value);
// RFC 3339 UTC timestamp with nanoseconds, as Docker's json-file log uses.
void format_timestamp(char* out, size_t cap);
// Field 22 (starttime, clock ticks since boot) of /proc/<pid>/stat, see proc(5).
int proc_start_time(pid_t pid, unsigned long long* out);
char* xstrdup(const char* s);

}  // namespace shim
