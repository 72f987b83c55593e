// A named network namespace, made the way ip-netns(8) makes one — a bind mount of the
// namespace onto an ordinary file keeps it alive without a process — but without running
// a process: a throwaway thread unshares its own network namespace (CLONE_NEWNET moves
// only the calling thread, unshare(2)), brings its loopback up, bind-mounts
// /proc/thread-self/ns/net onto the file and ends. The daemon's other threads never leave
// their namespace. It replaces a synchronous unshare(1) per container (~6 ms of blocked
// event loop, fork of the daemon). Bringing lo up here, from a socket the thread opens
// inside, spares the caller a second thread that joins the namespace to open a netlink
// socket there (~1 ms per container, measured in the daemon).
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <system_error>
#include <thread>

#include "errors.h"
#include "register.h"

namespace d2p {

namespace {

// A socket belongs to the network namespace of the thread that opens it (socket(7)).
SysError LoopbackUp(const std::string& file) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {errno, "socket", file};
  struct ifreq request;
  memset(&request, 0, sizeof request);
  strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  SysError outcome;
  if (ioctl(fd, SIOCGIFFLAGS, &request) < 0) {
    outcome = {errno, "ioctl SIOCGIFFLAGS lo", file};
  } else {
    request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
    if (ioctl(fd, SIOCSIFFLAGS, &request) < 0) outcome = {errno, "ioctl SIOCSIFFLAGS lo", file};
  }
  if (close(fd) < 0 && outcome.err == 0) outcome = {errno, "close", file};
  return outcome;
}

SysError BindNewNetns(const std::string& file) {
  if (unshare(CLONE_NEWNET) < 0) return {errno, "unshare", file};
  SysError up = LoopbackUp(file);
  if (up.err != 0) return up;
  if (mount("/proc/thread-self/ns/net", file.c_str(), nullptr, MS_BIND, nullptr) < 0) return {errno, "mount", file};
  return {};
}

Napi::Value NetnsCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string file = StringArg(info, 0, "file");
  SysError outcome;
  try {
    std::thread worker([&] { outcome = BindNewNetns(file); });
    worker.join();
  } catch (const std::system_error& e) {
    ThrowErrno(env, e.code().value(), "pthread_create", file);
  }
  if (outcome.err != 0) ThrowErrno(env, outcome.err, outcome.syscall.c_str(), outcome.path);
  return env.Undefined();
}

}  // namespace

void RegisterNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("netnsCreate", Napi::Function::New(env, NetnsCreate, "netnsCreate"));
}

}  // namespace d2p
