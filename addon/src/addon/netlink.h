// rtnetlink functions of the in-process addon (DESIGN.md §4): links, addresses and
// routes, each optionally inside another network namespace. Typed face: addon/netlink.ts.
#pragma once
#include <napi.h>

namespace d2p {
void RegisterNetlink(Napi::Env env, Napi::Object exports);
}  // namespace d2p
