// One registration function per source file of the addon (see addon.cc).
#pragma once
#include <napi.h>

namespace d2p {
void RegisterMount(Napi::Env env, Napi::Object exports);
void RegisterPidfd(Napi::Env env, Napi::Object exports);
void RegisterProc(Napi::Env env, Napi::Object exports);
void RegisterNetns(Napi::Env env, Napi::Object exports);
void RegisterFiles(Napi::Env env, Napi::Object exports);
void RegisterSpawn(Napi::Env env, Napi::Object exports);
}  // namespace d2p
