// attach.sock: how `d2p run -it` / `-i` reaches a running container's terminal or stdin
// (the role of containerd-shim's console socket and conmon's attach socket). The
// supervisor listens on <state dir>/attach.sock; clients send frames, it sends back the
// terminal's output as raw bytes.
//
//   client → shim: [type u8][length u16 big-endian][payload]
//     'd' bytes for the terminal or stdin      'r' cols u16 + rows u16 (TIOCSWINSZ)
//     'e' end of stdin (closes the stdin pipe; ignored with a terminal)
//
// Input is written without blocking: when the workload stops reading, the shim stops
// reading clients (backpressure) instead of blocking its log copying or buffering more.
#pragma once
#include <poll.h>
#include <stddef.h>

namespace shim {

const size_t kAttachClients = 4;
const size_t kAttachFrameMax = 4096;

struct AttachClient {
  int fd = -1;
  unsigned char* in = nullptr;  // received bytes not yet consumed (one frame at most)
  size_t in_len = 0;
};

struct Attach {
  int listen_fd = -1;
  int input_fd = -1;  // pty master or the write end of the stdin pipe; -1 once closed
  bool tty = false;
  bool blocked = false;  // input_fd is full: wait for POLLOUT before reading clients
  AttachClient clients[kAttachClients];
  // Terminal output produced while nobody was attached, replayed to the next client so
  // `run -it` shows the shell's first prompt (bounded: the newest bytes are kept).
  char* pending = nullptr;
  size_t pending_len = 0;
};

// Creates <dir>/attach.sock (listening, close-on-exec). -1 with g_status set.
int attach_listen(Attach* a, const char* dir);
// Number of pollfds attach_poll_fds fills (constant).
const size_t kAttachPollFds = kAttachClients + 2;
void attach_poll_fds(const Attach* a, struct pollfd* p);
// Handles the events of the pollfds attach_poll_fds filled; -1 (g_status set) when a
// step failed that the workload does not depend on (a resize, an accept).
int attach_handle(Attach* a, const struct pollfd* p);
// Terminal output: to every client, or kept for the next one.
void attach_output(Attach* a, const char* data, size_t n);
// Disconnects clients (they read EOF), removes the socket, frees buffers; -1 with
// g_status set when the socket could not be removed.
int attach_close(Attach* a, const char* dir);

}  // namespace shim
