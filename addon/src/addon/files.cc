// mknod(2) and lsetxattr(2): the two calls a layer extraction needs that Node's fs lacks
// (device nodes, overlayfs whiteouts, xattrs). Synchronous on purpose: each is one short
// system call made by the extractor between two writes; a thread-pool hop would cost more.
// The file type bits of `mode` are chosen in TypeScript (addon/index.ts's S_IF*).
#include <errno.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "errors.h"
#include "register.h"

namespace d2p {

namespace {

Napi::Value Mknod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  mode_t mode = static_cast<mode_t>(IntArg(info, 1, "mode"));
  dev_t dev = makedev(static_cast<unsigned int>(IntArg(info, 2, "major")), static_cast<unsigned int>(IntArg(info, 3, "minor")));
  if (mknod(path.c_str(), mode, dev) < 0) ThrowErrno(env, errno, "mknod", path);
  return env.Undefined();
}

Napi::Value Lsetxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  std::string name = StringArg(info, 1, "name");
  if (!info[2].IsBuffer()) throw Napi::TypeError::New(env, "value must be a Buffer");
  Napi::Buffer<char> value = info[2].As<Napi::Buffer<char>>();
  if (lsetxattr(path.c_str(), name.c_str(), value.Data(), value.Length(), 0) < 0) ThrowErrno(env, errno, "lsetxattr", path);
  return env.Undefined();
}

}  // namespace

void RegisterFiles(Napi::Env env, Napi::Object exports) {
  exports.Set("mknod", Napi::Function::New(env, Mknod, "mknod"));
  exports.Set("lsetxattr", Napi::Function::New(env, Lsetxattr, "lsetxattr"));
}

}  // namespace d2p
