// mount(2) and umount2(2). Flags are passed as numbers from addon/index.ts's constants,
// which mirror <sys/mount.h>, so TS decides and C++ only performs.
#include <errno.h>
#include <sys/mount.h>

#include "errors.h"
#include "register.h"

namespace d2p {

namespace {

Napi::Value Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string source = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  std::string target = StringArg(info, 1, "target");
  std::string fstype = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
  unsigned long flags = static_cast<unsigned long>(IntArg(info, 3, "flags"));
  std::string data = info.Length() > 4 && info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : "";
  if (mount(source.empty() ? nullptr : source.c_str(), target.c_str(), fstype.empty() ? nullptr : fstype.c_str(),
            flags, data.empty() ? nullptr : data.c_str()) < 0)
    ThrowErrno(env, errno, "mount", target);
  return env.Undefined();
}

Napi::Value Umount2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string target = StringArg(info, 0, "target");
  int flags = static_cast<int>(IntArg(info, 1, "flags"));
  if (umount2(target.c_str(), flags) < 0) ThrowErrno(env, errno, "umount2", target);
  return env.Undefined();
}

}  // namespace

void RegisterMount(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, Mount, "mount"));
  exports.Set("umount2", Napi::Function::New(env, Umount2, "umount2"));
}

}  // namespace d2p
