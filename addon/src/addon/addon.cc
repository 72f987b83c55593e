// The in-process addon: system calls Node cannot make (DESIGN.md §4).
#include <napi.h>

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  return exports;
}

NODE_API_MODULE(d2p, Init)
