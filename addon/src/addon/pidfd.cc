// pidfds (pidfd_open(2), pidfd_send_signal(2)) and exit notification on the event loop:
// a pidfd becomes readable when its process exits, so a uv_poll_t on the main loop tells
// us without a thread (DESIGN.md §10: never on the libuv thread pool).
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#include <memory>

#include "errors.h"
#include "register.h"

namespace d2p {

namespace {

Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t pid = IntArg(info, 0, "pid");
  int fd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  if (fd < 0) ThrowErrno(env, errno, "pidfd_open", std::to_string(pid));
  // pidfd_open(2) sets O_CLOEXEC itself, so the fd never leaks into spawned children.
  return Napi::Number::New(env, fd);
}

Napi::Value PidfdSendSignal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(IntArg(info, 0, "pidfd"));
  int sig = static_cast<int>(IntArg(info, 1, "signal"));
  if (syscall(SYS_pidfd_send_signal, fd, sig, nullptr, 0) < 0)
    ThrowErrno(env, errno, "pidfd_send_signal", "pidfd " + std::to_string(fd));
  return env.Undefined();
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(IntArg(info, 0, "fd"));
  if (close(fd) < 0) ThrowErrno(env, errno, "close", "fd " + std::to_string(fd));
  return env.Undefined();
}

// One watch: owns the uv_poll_t and the JS callback until the process exits or the
// watch is cancelled; the handle frees itself in its close callback.
struct Watch {
  uv_poll_t handle;
  Napi::FunctionReference callback;
  Napi::AsyncContext* context;
  bool closing = false;
  // Shared with the JS cancel function, which may be called after the handle is gone.
  std::shared_ptr<Watch*> slot;
};

void OnClosed(uv_handle_t* h) {
  Watch* w = static_cast<Watch*>(h->data);
  *w->slot = nullptr;
  delete w->context;
  delete w;
}

void Stop(Watch* w) {
  if (w->closing) return;
  w->closing = true;
  uv_poll_stop(&w->handle);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->handle), OnClosed);
}

void OnReadable(uv_poll_t* h, int status, int) {
  Watch* w = static_cast<Watch*>(h->data);
  Napi::Env env = w->callback.Env();
  Napi::HandleScope scope(env);
  Napi::Value arg = env.Null();
  if (status < 0) arg = MakeErrnoError(env, SysError{-status, "uv_poll", "pidfd"}).Value();
  Napi::FunctionReference cb = std::move(w->callback);
  Napi::AsyncContext* ctx = w->context;
  w->context = nullptr;
  Stop(w);
  // MakeCallback runs the microtask queue afterwards, as any libuv-driven callback must.
  cb.MakeCallback(env.Global(), {arg}, *ctx);
  delete ctx;
}

Napi::Value WatchPidfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(IntArg(info, 0, "pidfd"));
  if (info.Length() < 2 || !info[1].IsFunction()) throw Napi::TypeError::New(env, "argument callback must be a function");
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) ThrowErrno(env, EINVAL, "napi_get_uv_event_loop", "");
  bool keep_alive = info.Length() < 3 || !info[2].IsBoolean() || info[2].As<Napi::Boolean>().Value();
  Watch* w = new Watch();
  w->handle.data = w;
  w->slot = std::make_shared<Watch*>(w);
  w->callback = Napi::Persistent(info[1].As<Napi::Function>());
  w->context = new Napi::AsyncContext(env, "d2p.pidfdWatch");
  int rc = uv_poll_init(loop, &w->handle, fd);
  if (rc < 0) {
    delete w->context;
    delete w;
    ThrowErrno(env, -rc, "uv_poll_init", "pidfd " + std::to_string(fd));
  }
  rc = uv_poll_start(&w->handle, UV_READABLE, OnReadable);
  if (rc < 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&w->handle), OnClosed);
    ThrowErrno(env, -rc, "uv_poll_start", "pidfd " + std::to_string(fd));
  }
  // A daemon watching many containers must still be able to exit: unref'ed handles do
  // not keep the loop alive (uv_unref, libuv handle docs).
  if (!keep_alive) uv_unref(reinterpret_cast<uv_handle_t*>(&w->handle));
  std::shared_ptr<Watch*> slot = w->slot;
  return Napi::Function::New(env, [slot](const Napi::CallbackInfo& i) {
    if (*slot) Stop(*slot);
    return i.Env().Undefined();
  }, "cancel");
}

}  // namespace

void RegisterPidfd(Napi::Env env, Napi::Object exports) {
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen, "pidfdOpen"));
  exports.Set("pidfdSendSignal", Napi::Function::New(env, PidfdSendSignal, "pidfdSendSignal"));
  exports.Set("pidfdWatch", Napi::Function::New(env, WatchPidfd, "pidfdWatch"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
}

}  // namespace d2p
