#include "attach.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

namespace shim {

namespace {

const size_t kFrameHeader = 3;
const size_t kPendingMax = 4096;

// sockaddr_un.sun_path holds 108 bytes (unix(7)); a state dir may be longer, so the path
// goes through /proc/self/fd of the opened directory, as runc does for its sockets.
int socket_address(const char* dir, int* dirfd, struct sockaddr_un* addr) {
  *dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (*dirfd < 0) return fail(errno, "open", dir, "opening the state dir for attach.sock");
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  snprintf(addr->sun_path, sizeof addr->sun_path, "/proc/self/fd/%d/attach.sock", *dirfd);
  return 0;
}

void drop_client(AttachClient* c) {
  if (c->fd >= 0) close(c->fd);
  free(c->in);
  *c = AttachClient();
}

// A client that stops reading for this long is dropped rather than stalling the logs.
int set_send_timeout(int fd) {
  struct timeval tv = {2, 0};
  if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
    return fail(errno, "setsockopt", "attach.sock", "setting the send timeout of an attach client");
  return 0;
}

void send_to(AttachClient* c, const char* data, size_t n) {
  if (c->fd >= 0 && n > 0 && write_all(c->fd, data, n) < 0) drop_client(c);
}

int accept_client(Attach* a) {
  int fd = accept4(a->listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  // The peer may give up between poll and accept (accept(2): ECONNABORTED, EAGAIN).
  if (fd < 0 && (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)) return 0;
  if (fd < 0) return fail(errno, "accept4", "attach.sock", "accepting an attach client");
  AttachClient* slot = nullptr;
  for (AttachClient& c : a->clients)
    if (c.fd < 0) { slot = &c; break; }
  unsigned char* buf = slot ? static_cast<unsigned char*>(malloc(kFrameHeader + kAttachFrameMax)) : nullptr;
  if (!buf) {  // every slot taken (or no memory): refuse by closing, the client sees EOF
    close(fd);
    return 0;
  }
  if (set_send_timeout(fd) < 0) {
    close(fd);
    free(buf);
    return -1;
  }
  slot->fd = fd;
  slot->in = buf;
  slot->in_len = 0;
  send_to(slot, a->pending, a->pending_len);
  a->pending_len = 0;
  return 0;
}

int resize(Attach* a, const unsigned char* p) {
  struct winsize ws;
  memset(&ws, 0, sizeof ws);
  ws.ws_col = static_cast<unsigned short>((p[0] << 8) | p[1]);
  ws.ws_row = static_cast<unsigned short>((p[2] << 8) | p[3]);
  // The kernel signals SIGWINCH to the foreground process group itself (tty_ioctl(4)).
  if (a->tty && a->input_fd >= 0 && ws.ws_col && ws.ws_row && ioctl(a->input_fd, TIOCSWINSZ, &ws) < 0)
    return fail(errno, "ioctl", "TIOCSWINSZ", "resizing the container's terminal");
  return 0;
}

void close_input(Attach* a) {
  if (a->tty || a->input_fd < 0) return;
  close(a->input_fd);
  a->input_fd = -1;
  a->blocked = false;
}

// Writes what the workload accepts now; returns how much was written.
size_t write_input(Attach* a, const unsigned char* data, size_t n) {
  if (a->input_fd < 0) return n;  // stdin already closed: the bytes have nowhere to go
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(a->input_fd, data + done, n - done);
    if (w > 0) { done += static_cast<size_t>(w); continue; }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) { a->blocked = true; return done; }
    close_input(a);  // EPIPE: the workload closed its stdin; later input is dropped
    return n;
  }
  return n;
}

// Consumes complete frames from the client's buffer; stops early when input is full.
// -1 (g_status set) when a resize failed; the frames are consumed all the same.
int consume_frames(Attach* a, AttachClient* c) {
  int rc = 0;
  size_t off = 0;
  while (!a->blocked && c->in_len - off >= kFrameHeader) {
    unsigned char* f = c->in + off;
    size_t len = (static_cast<size_t>(f[1]) << 8) | f[2];
    if (len > kAttachFrameMax) { drop_client(c); return rc; }
    if (c->in_len - off < kFrameHeader + len) break;
    if (f[0] == 'd') {
      size_t wrote = write_input(a, f + kFrameHeader, len);
      if (wrote < len) {  // keep the rest as a shorter frame for when input drains
        size_t left = len - wrote;
        memmove(f + kFrameHeader, f + kFrameHeader + wrote, left + (c->in_len - off - kFrameHeader - len));
        c->in_len -= wrote;
        f[1] = static_cast<unsigned char>(left >> 8);
        f[2] = static_cast<unsigned char>(left & 0xff);
        break;
      }
    } else if (f[0] == 'r' && len == 4) {
      if (resize(a, f + kFrameHeader) < 0) rc = -1;
    } else if (f[0] == 'e') {
      close_input(a);
    } else {
      drop_client(c);  // not our protocol: a client bug, not the workload's problem
      return rc;
    }
    off += kFrameHeader + len;
  }
  memmove(c->in, c->in + off, c->in_len - off);
  c->in_len -= off;
  return rc;
}

int read_client(Attach* a, AttachClient* c) {
  size_t room = kFrameHeader + kAttachFrameMax - c->in_len;
  ssize_t n = read(c->fd, c->in + c->in_len, room);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 0;
  // EOF or ECONNRESET: the client went away, which ends only its attachment.
  if (n <= 0) { drop_client(c); return 0; }
  c->in_len += static_cast<size_t>(n);
  return consume_frames(a, c);
}

}  // namespace

int attach_listen(Attach* a, const char* dir) {
  int dirfd;
  struct sockaddr_un addr;
  if (socket_address(dir, &dirfd, &addr) < 0) return -1;
  // A socket left by a shim that died is only a name; a new bind needs it gone.
  if (unlinkat(dirfd, "attach.sock", 0) < 0 && errno != ENOENT) {
    int e = errno;
    close(dirfd);
    return fail(e, "unlink", "attach.sock", "removing a stale attach.sock in %s", dir);
  }
  a->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int rc = 0;
  if (a->listen_fd < 0) rc = fail(errno, "socket", "attach.sock", "creating the attach socket");
  else if (bind(a->listen_fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) < 0)
    rc = fail(errno, "bind", dir, "binding %s/attach.sock", dir);
  else if (listen(a->listen_fd, 4) < 0)
    rc = fail(errno, "listen", dir, "listening on %s/attach.sock", dir);
  close(dirfd);
  if (rc < 0 && a->listen_fd >= 0) { close(a->listen_fd); a->listen_fd = -1; }
  if (rc == 0 && a->tty) a->pending = static_cast<char*>(malloc(kPendingMax));
  if (a->input_fd >= 0) fcntl(a->input_fd, F_SETFL, fcntl(a->input_fd, F_GETFL) | O_NONBLOCK);
  return rc;
}

void attach_poll_fds(const Attach* a, struct pollfd* p) {
  p[0] = {a->listen_fd, POLLIN, 0};
  p[1] = {a->blocked ? a->input_fd : -1, POLLOUT, 0};
  for (size_t i = 0; i < kAttachClients; i++)
    p[2 + i] = {a->blocked ? -1 : a->clients[i].fd, POLLIN, 0};
}

int attach_handle(Attach* a, const struct pollfd* p) {
  int rc = 0;
  if (p[1].revents) {
    a->blocked = false;
    for (AttachClient& c : a->clients)
      if (c.fd >= 0 && consume_frames(a, &c) < 0) rc = -1;
    if (p[1].revents & (POLLERR | POLLHUP)) close_input(a);
  }
  for (size_t i = 0; i < kAttachClients; i++)
    if (p[2 + i].revents && a->clients[i].fd >= 0 && read_client(a, &a->clients[i]) < 0) rc = -1;
  if (p[0].revents && accept_client(a) < 0) rc = -1;
  return rc;
}

void attach_output(Attach* a, const char* data, size_t n) {
  bool any = false;
  for (AttachClient& c : a->clients)
    if (c.fd >= 0) { any = true; send_to(&c, data, n); }
  if (any || !a->pending) return;
  if (n >= kPendingMax) {
    memcpy(a->pending, data + n - kPendingMax, kPendingMax);
    a->pending_len = kPendingMax;
    return;
  }
  if (a->pending_len + n > kPendingMax) {
    size_t drop = a->pending_len + n - kPendingMax;
    memmove(a->pending, a->pending + drop, a->pending_len - drop);
    a->pending_len -= drop;
  }
  memcpy(a->pending + a->pending_len, data, n);
  a->pending_len += n;
}

int attach_close(Attach* a, const char* dir) {
  int rc = 0;
  for (AttachClient& c : a->clients) drop_client(&c);
  if (a->listen_fd >= 0) {
    close(a->listen_fd);
    a->listen_fd = -1;
    char path[1100];
    snprintf(path, sizeof path, "%s/attach.sock", dir);
    // The socket is ours; if it is already gone there is nothing left to clean.
    if (unlink(path) < 0 && errno != ENOENT) rc = fail(errno, "unlink", path, "removing attach.sock");
  }
  free(a->pending);
  a->pending = nullptr;
  a->pending_len = 0;
  return rc;
}

}  // namespace shim
