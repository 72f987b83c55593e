#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

namespace shim {

Status g_status;

int fail(int err, const char* syscall, const char* path, const char* fmt, ...) {
  g_status.err = err;
  snprintf(g_status.syscall, sizeof g_status.syscall, "%s", syscall ? syscall : "");
  snprintf(g_status.path, sizeof g_status.path, "%s", path ? path : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_status.message, sizeof g_status.message, fmt, ap);
  va_end(ap);
  return -1;
}

int err_context(const char* fmt, ...) {
  char prefix[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  char joined[sizeof g_status.message];
  size_t plen = strlen(prefix);
  // Outermost context first, as crun's error wrapping reads: "mount /proc: opening ...".
  if (plen + 2 >= sizeof joined) plen = sizeof joined - 3;
  memcpy(joined, prefix, plen);
  memcpy(joined + plen, ": ", 2);
  size_t room = sizeof joined - plen - 3;
  size_t mlen = strnlen(g_status.message, room);
  memcpy(joined + plen + 2, g_status.message, mlen);
  joined[plen + 2 + mlen] = 0;
  memcpy(g_status.message, joined, sizeof joined);
  return -1;
}

size_t status_json(char* out, size_t cap) {
  Buf b;
  const char* code = g_status.err ? strerrorname_np(g_status.err) : "EINVAL";
  char msg[sizeof g_status.message + 128];
  if (g_status.err)
    snprintf(msg, sizeof msg, "%s: %s", g_status.message, strerror(g_status.err));
  else
    snprintf(msg, sizeof msg, "%s", g_status.message);
  b.append("{\"code\":");
  b.append_json_string(code ? code : "EUNKNOWN", strlen(code ? code : "EUNKNOWN"));
  b.appendf(",\"errno\":%d,\"syscall\":", g_status.err);
  b.append_json_string(g_status.syscall, strlen(g_status.syscall));
  b.append(",\"path\":");
  b.append_json_string(g_status.path, strlen(g_status.path));
  b.append(",\"message\":");
  b.append_json_string(msg, strlen(msg));
  b.append("}\n");
  size_t n = b.len < cap - 1 ? b.len : cap - 1;
  if (b.data) memcpy(out, b.data, n);
  out[n] = 0;
  b.release();
  return n;
}

bool Buf::append(const char* s, size_t n) {
  if (len + n + 1 > cap) {
    size_t ncap = cap ? cap : 256;
    while (ncap < len + n + 1) ncap *= 2;
    char* p = static_cast<char*>(realloc(data, ncap));
    if (!p) return false;
    data = p;
    cap = ncap;
  }
  memcpy(data + len, s, n);
  len += n;
  data[len] = 0;
  return true;
}

bool Buf::append(const char* s) { return append(s, strlen(s)); }

bool Buf::appendf(const char* fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return false;
  return append(tmp, static_cast<size_t>(n) < sizeof tmp ? n : sizeof tmp - 1);
}

bool Buf::append_json_string(const char* s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (!append("\"", 1)) return false;
  size_t start = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    if (!append(s + start, i - start)) return false;
    char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
    size_t elen = 2;
    switch (c) {
      case '"': esc[1] = '"'; break;
      case '\\': esc[1] = '\\'; break;
      case '\n': esc[1] = 'n'; break;
      case '\r': esc[1] = 'r'; break;
      case '\t': esc[1] = 't'; break;
      default:
        esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
        esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
        elen = 6;
    }
    if (!append(esc, elen)) return false;
    start = i + 1;
  }
  if (!append(s + start, n - start)) return false;
  return append("\"", 1);
}

void Buf::release() {
  free(data);
  data = nullptr;
  len = cap = 0;
}

size_t read_until_eof(int fd, char* buf, size_t cap) {
  size_t used = 0;
  while (used < cap - 1) {
    ssize_t n = read(fd, buf + used, cap - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    used += static_cast<size_t>(n);
  }
  buf[used] = 0;
  return used;
}

int write_all(int fd, const char* data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno, "write", "", "writing %zu bytes to fd %d", len, fd);
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}

int read_file(const char* path, char** out, size_t* outlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno, "open", path, "opening %s", path);
  Buf b;
  char chunk[4096];
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      b.release();
      return fail(e, "read", path, "reading %s", path);
    }
    if (n == 0) break;
    if (!b.append(chunk, static_cast<size_t>(n))) {
      close(fd);
      b.release();
      return fail(ENOMEM, "malloc", path, "reading %s", path);
    }
  }
  close(fd);
  if (!b.data && !b.append("", 0)) return fail(ENOMEM, "malloc", path, "reading %s", path);
  *out = b.data;
  if (outlen) *outlen = b.len;
  return 0;
}

int replace_file(const char* dir, const char* name, const char* data, size_t len) {
  char tmp[1024], dst[1024];
  snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
  snprintf(dst, sizeof dst, "%s/%s", dir, name);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail(errno, "open", tmp, "creating %s", tmp);
  if (write_all(fd, data, len) < 0) {
    close(fd);
    return err_context("writing %s", tmp);
  }
  if (close(fd) < 0) return fail(errno, "close", tmp, "writing %s", tmp);
  if (rename(tmp, dst) < 0) return fail(errno, "rename", dst, "renaming %s into place", tmp);
  return 0;
}

int write_string_file(const char* path, const char* value) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno, "open", path, "opening %s", path);
  ssize_t n = write(fd, value, strlen(value));
  int e = errno;
  close(fd);
  if (n < 0) return fail(e, "write", path, "writing '%s' to %s", value, path);
  return 0;
}

void format_timestamp(char* out, size_t cap) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
}

int proc_start_time(pid_t pid, unsigned long long* out) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  char* text = nullptr;
  if (read_file(path, &text, nullptr) < 0) return -1;
  // comm (field 2) may contain spaces and parentheses: count fields after the last ')'.
  char* p = strrchr(text, ')');
  int field = 2;
  unsigned long long value = 0;
  bool found = false;
  for (char* tok = p ? p + 1 : nullptr; tok && *tok;) {
    while (*tok == ' ') tok++;
    field++;
    if (field == 22) {
      value = strtoull(tok, nullptr, 10);
      found = true;
      break;
    }
    tok = strchr(tok, ' ');
  }
  free(text);
  if (!found) return fail(EINVAL, "read", path, "no starttime field in %s", path);
  *out = value;
  return 0;
}

char* xstrdup(const char* s) { return s ? strdup(s) : nullptr; }

}  // namespace shim
