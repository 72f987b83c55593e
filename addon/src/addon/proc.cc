// /proc helpers: a process is identified by pid + start time, never by pid alone, since
// pids are reused (proc(5), /proc/pid/stat field 22).
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>

#include "errors.h"
#include "register.h"

namespace d2p {

namespace {

bool ReadSmallFile(const std::string& path, std::string* out, SysError* err) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) { *err = SysError{errno, "open", path}; return false; }
  char buf[1024];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out->append(buf, static_cast<size_t>(n));
  int e = errno;
  close(fd);
  if (n < 0) { *err = SysError{e, "read", path}; return false; }
  return true;
}

Napi::Value GetProcStartTime(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t pid = IntArg(info, 0, "pid");
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  std::string text;
  SysError err;
  if (!ReadSmallFile(path, &text, &err)) throw MakeErrnoError(env, err);
  // comm may contain spaces and ')' — fields are counted after the last ')'.
  size_t pos = text.rfind(')');
  if (pos == std::string::npos) ThrowErrno(env, EINVAL, "read", path);
  int field = 2;
  const char* p = text.c_str() + pos + 1;
  while (*p) {
    while (*p == ' ') p++;
    if (++field == 22) return Napi::Number::New(env, static_cast<double>(strtoull(p, nullptr, 10)));
    while (*p && *p != ' ') p++;
  }
  ThrowErrno(env, EINVAL, "read", path);
}

// setns(2) on a namespace file, for code that must enter e.g. a container's netns.
Napi::Value Setns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  int nstype = static_cast<int>(IntArg(info, 1, "nstype"));
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, errno, "open", path);
  int rc = setns(fd, nstype);
  int e = errno;
  close(fd);
  if (rc < 0) ThrowErrno(env, e, "setns", path);
  return env.Undefined();
}

}  // namespace

void RegisterProc(Napi::Env env, Napi::Object exports) {
  exports.Set("getProcStartTime", Napi::Function::New(env, GetProcStartTime, "getProcStartTime"));
  exports.Set("setns", Napi::Function::New(env, Setns, "setns"));
}

}  // namespace d2p
