// Errors of the netlink functions: a status value carrying errno plus the context added
// on the way up (crun's libcrun_error_t idea, DESIGN.md §10), converted to a JS Error
// exactly once, at the binding boundary, shaped like Node's fs errors.
//
// The JS error has the shape of errors.h's MakeErrnoError (code, negative errno, syscall,
// path, message "CODE: description, syscall 'x'") plus what d2p::SysError cannot carry:
// `object` (the link, address or route) and `detail` (the kernel's extended ACK text).
// Folding both into SysError would let this file shrink to the Status type.
#pragma once
#include <napi.h>

#include <errno.h>
#include <string.h>

#include <string>
#include <utility>

namespace d2p::netlink {

struct [[nodiscard]] Status {
  int err = 0;           // positive errno; 0 means success
  std::string syscall;   // "netlink RTM_NEWLINK", "setns", "open", "socket"
  std::string object;    // the link, address or route involved
  std::string path;      // the network namespace file, when one was given
  std::string detail;    // the kernel's extended ACK message, or our explanation

  bool ok() const { return err == 0; }
};

inline Status Ok() { return Status{}; }

inline Status Fail(int err, std::string syscall, std::string object, std::string detail = {}) {
  Status status;
  status.err = err;
  status.syscall = std::move(syscall);
  status.object = std::move(object);
  status.detail = std::move(detail);
  return status;
}

// Fails with the current errno. It is read before any argument string is built, since
// an allocation may legally change errno (errno(3)); hence C strings only.
inline Status FailErrno(const char* syscall, const char* object, const char* detail = "") {
  int err = errno;
  return Fail(err, syscall, object, detail);
}

// strerrorname_np/strerrordesc_np (glibc ≥ 2.32) are thread-safe, unlike strerror(3),
// and give the symbolic name Node uses as `code` (e.g. "EEXIST").
inline std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? name : "EUNKNOWN";
}

inline std::string ErrnoDescription(int err) {
  const char* description = strerrordesc_np(err);
  return description != nullptr ? description : "Unknown error " + std::to_string(err);
}

// Message in Node's format "CODE: description, syscall 'object'", then where and why.
inline std::string FormatMessage(const Status& status) {
  std::string message = ErrnoName(status.err) + ": " + ErrnoDescription(status.err) + ", " +
                        status.syscall;
  if (!status.object.empty()) {
    message += " '" + status.object + "'";
    if (!status.path.empty()) message += " in network namespace '" + status.path + "'";
  } else if (!status.path.empty()) {
    message += " '" + status.path + "'";  // the namespace file itself failed, as in fs errors
  }
  if (!status.detail.empty()) message += " (" + status.detail + ")";
  return message;
}

// Node's system errors carry errno as a negative number (libuv's convention, see the
// `error.errno` entry of Node's errors documentation); we follow it so code handling
// fs errors handles these the same way.
inline Napi::Error ToJsError(Napi::Env env, const Status& status) {
  Napi::Error error = Napi::Error::New(env, FormatMessage(status));
  Napi::Object value = error.Value();
  value.Set("code", ErrnoName(status.err));
  value.Set("errno", -status.err);
  value.Set("syscall", status.syscall);
  if (!status.object.empty()) value.Set("object", status.object);
  if (!status.path.empty()) value.Set("path", status.path);
  if (!status.detail.empty()) value.Set("detail", status.detail);
  return error;
}

}  // namespace d2p::netlink
