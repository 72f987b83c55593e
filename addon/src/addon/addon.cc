// The in-process addon: system calls Node cannot make (DESIGN.md §4). Each area lives in
// its own file and registers its functions here, so new areas (netlink) slot in without
// touching the others.
#include <napi.h>

#include "netlink.h"
#include "register.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  d2p::RegisterMount(env, exports);
  d2p::RegisterPidfd(env, exports);
  d2p::RegisterProc(env, exports);
  d2p::RegisterNetns(env, exports);
  d2p::RegisterFiles(env, exports);
  d2p::RegisterSpawn(env, exports);
  d2p::RegisterNetlink(env, exports);
  return exports;
}

NODE_API_MODULE(d2p, Init)
