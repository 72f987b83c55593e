// The code that runs in the freshly cloned container process, before execve. Kept alone
// in this file (node-pty's discipline): the supervisor prepared every fd and buffer first.
#pragma once
#include "config.h"

namespace shim {

struct InitArgs {
  const Config* cfg;
  int sync_fd;    // socket to the supervisor: 'g' in; 'T'+pty fd or 'E'+error JSON out
  int stdin_fd;   // /dev/null of the host, or the read end of the stdin pipe (stdin_open)
  int stdout_fd;  // write ends of the log pipes (unused with a terminal)
  int stderr_fd;
};

// Never returns: execs the workload or reports an error on sync_fd and _exit(127)s.
[[noreturn]] void container_init(const InitArgs* args);
// Reports g_status on fd as 'E' + JSON and exits; shared with exec's child.
[[noreturn]] void child_fail(int fd);
// Opens a pty pair in the devpts mounted at /dev/pts of the current root.
int open_pty(int* master, int* slave);
// TIOCSWINSZ on the master; 0 columns or rows leave the kernel's default (ioctl_tty(2)).
int set_window_size(int master, long long cols, long long rows);
// Makes `slave` the controlling terminal and stdio of this process (new session).
int become_tty_session(int slave);
// Sends/receives one fd with SCM_RIGHTS (unix(7)), tagged with byte `tag`.
int send_fd(int sock, char tag, int fd);

}  // namespace shim
