// Native failures become JS errors exactly once, here, shaped like Node's fs errors:
// message "ECODE: description, syscall 'path'", plus code, errno, syscall and path.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

namespace d2p {

// A failed system call on its way up to the JS boundary (crun's error wrapping).
struct SysError {
  int err = 0;
  std::string syscall;
  std::string path;
};

Napi::Error MakeErrnoError(Napi::Env env, const SysError& e);
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& path);
// Argument checks: a TypeError naming the argument.
std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* name);
int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name);
std::vector<std::string> StringArrayArg(const Napi::CallbackInfo& info, size_t i, const char* name);

}  // namespace d2p
