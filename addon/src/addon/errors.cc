#include "errors.h"

#include <string.h>

namespace d2p {

Napi::Error MakeErrnoError(Napi::Env env, const SysError& e) {
  const char* code = strerrorname_np(e.err);
  std::string message = std::string(code ? code : "EUNKNOWN") + ": " + strerror(e.err) + ", " + e.syscall;
  if (!e.path.empty()) message += " '" + e.path + "'";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", code ? code : "EUNKNOWN");
  // Node reports errno negated (libuv's convention); keep that so both compare equal.
  error.Set("errno", Napi::Number::New(env, -e.err));
  error.Set("syscall", e.syscall);
  if (!e.path.empty()) error.Set("path", e.path);
  return error;
}

void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& path) {
  throw MakeErrnoError(env, SysError{err, syscall, path});
}

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString())
    throw Napi::TypeError::New(info.Env(), std::string("argument ") + name + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string("argument ") + name + " must be a number");
  return info[i].As<Napi::Number>().Int64Value();
}

std::vector<std::string> StringArrayArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const std::string problem = std::string("argument ") + name + " must be an array of strings";
  if (info.Length() <= i || !info[i].IsArray()) throw Napi::TypeError::New(info.Env(), problem);
  Napi::Array array = info[i].As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t k = 0; k < array.Length(); k++) {
    Napi::Value v = array.Get(k);
    if (!v.IsString()) throw Napi::TypeError::New(info.Env(), problem);
    out.push_back(v.As<Napi::String>().Utf8Value());
  }
  return out;
}

}  // namespace d2p
