// JS bindings of the rtnetlink operations (netlink_ops.h): argument checks, one socket
// per call in the namespace named by options.netns, and results as plain objects.
// Every call is synchronous: each is a handful of netlink round trips to the kernel.
#include "netlink.h"

#include <sys/socket.h>

#include <cmath>
#include <optional>
#include <string>

#include "errors.h"
#include "netlink_error.h"
#include "netlink_ops.h"
#include "netlink_socket.h"

namespace d2p {

namespace {

using netlink::AddressInfo;
using netlink::FileDescriptor;
using netlink::IpAddress;
using netlink::IpPrefix;
using netlink::LinkInfo;
using netlink::RouteInfo;
using netlink::RouteSpec;
using netlink::Socket;
using netlink::Status;

// ---- arguments ----

void ThrowIfFailed(Napi::Env env, Status status, const Socket* socket = nullptr) {
  if (status.ok()) return;
  if (status.path.empty() && socket != nullptr) status.path = socket->netnsPath();
  throw netlink::ToJsError(env, status);
}

Napi::Object OptionsArg(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined() || info[index].IsNull()) {
    return Napi::Object::New(info.Env());
  }
  if (!info[index].IsObject()) throw Napi::TypeError::New(info.Env(), "argument options must be an object");
  return info[index].As<Napi::Object>();
}

std::optional<std::string> OptionalString(Napi::Object object, const char* key) {
  Napi::Value value = object.Get(key);
  if (value.IsUndefined() || value.IsNull()) return std::nullopt;
  if (!value.IsString()) throw Napi::TypeError::New(object.Env(), std::string(key) + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

// An absent (undefined or null) value is nullopt; anything but a uint32 is a TypeError.
std::optional<uint32_t> ToUint32(Napi::Env env, Napi::Value value, const std::string& what) {
  if (value.IsUndefined() || value.IsNull()) return std::nullopt;
  double number = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : -1;
  if (number < 0 || number > UINT32_MAX || std::floor(number) != number) {
    throw Napi::TypeError::New(env, what + " must be an integer from 0 to 4294967295");
  }
  return static_cast<uint32_t>(number);
}

std::optional<uint32_t> OptionalUint32(Napi::Object object, const char* key) {
  return ToUint32(object.Env(), object.Get(key), key);
}

std::string LinkNameArg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  std::string name = StringArg(info, index, what);
  ThrowIfFailed(info.Env(), netlink::ValidateLinkName(name));
  return name;
}

uint32_t Uint32Arg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  std::string argument = std::string("argument ") + what;
  std::optional<uint32_t> value = ToUint32(info.Env(), info[index], argument);
  if (!value) throw Napi::TypeError::New(info.Env(), argument + " must be a number");
  return *value;
}

Socket OpenSocket(Napi::Env env, Napi::Object options) {
  Socket socket;
  ThrowIfFailed(env, Socket::Open(OptionalString(options, "netns").value_or(""), &socket));
  return socket;
}

FileDescriptor OpenNetns(Napi::Env env, const std::string& path) {
  FileDescriptor netns;
  ThrowIfFailed(env, netlink::OpenNetnsFile(path, &netns));
  return netns;
}

// ---- results ----

Napi::Object LinkToJs(Napi::Env env, const LinkInfo& link) {
  Napi::Object object = Napi::Object::New(env);
  object.Set("index", link.index);
  object.Set("name", link.name);
  object.Set("type", link.kind);
  object.Set("mtu", link.mtu);
  object.Set("up", link.up);
  object.Set("operState", link.operState);
  if (!link.macAddress.empty()) object.Set("macAddress", link.macAddress);
  if (!link.masterName.empty()) object.Set("master", link.masterName);
  return object;
}

int FamilyNumber(int family) { return family == AF_INET6 ? 6 : 4; }

Napi::Object AddressToJs(Napi::Env env, const AddressInfo& address) {
  Napi::Object object = Napi::Object::New(env);
  object.Set("index", address.linkIndex);
  object.Set("link", address.linkName);
  object.Set("family", FamilyNumber(address.prefix.address.family));
  object.Set("address", address.prefix.address.ToString());
  object.Set("prefixLength", address.prefix.prefixLength);
  object.Set("cidr", address.prefix.ToString());
  return object;
}

Napi::Object RouteToJs(Napi::Env env, const RouteInfo& route) {
  Napi::Object object = Napi::Object::New(env);
  object.Set("family", FamilyNumber(route.family));
  object.Set("dst", route.destination.prefixLength == 0 ? "default" : route.destination.ToString());
  if (route.gateway) object.Set("gateway", route.gateway->ToString());
  if (!route.device.empty()) object.Set("dev", route.device);
  if (route.preferredSource) object.Set("prefsrc", route.preferredSource->ToString());
  if (route.metric) object.Set("metric", *route.metric);
  object.Set("protocol", route.protocol);
  object.Set("scope", route.scope);
  object.Set("type", route.type);
  return object;
}

template <typename Item, typename Convert>
Napi::Array ToJsArray(Napi::Env env, const std::vector<Item>& items, Convert convert) {
  Napi::Array array = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); i++) array.Set(static_cast<uint32_t>(i), convert(env, items[i]));
  return array;
}

// ---- links ----

Napi::Value LinkAddBridgeJs(const Napi::CallbackInfo& info) {
  std::string name = LinkNameArg(info, 0, "name");
  Napi::Object options = OptionsArg(info, 1);
  std::optional<uint32_t> mtu = OptionalUint32(options, "mtu");
  Socket socket = OpenSocket(info.Env(), options);
  ThrowIfFailed(info.Env(), netlink::LinkAddBridge(socket, name, mtu), &socket);
  return info.Env().Undefined();
}

Napi::Value LinkAddVethJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = LinkNameArg(info, 0, "name");
  std::string peerName = LinkNameArg(info, 1, "peerName");
  Napi::Object options = OptionsArg(info, 2);
  netlink::VethOptions veth;
  veth.mtu = OptionalUint32(options, "mtu");
  std::optional<uint32_t> peerNetnsFd = OptionalUint32(options, "peerNetnsFd");
  std::optional<std::string> peerNetnsPath = OptionalString(options, "peerNetnsPath");
  if (peerNetnsFd && peerNetnsPath) {
    throw Napi::TypeError::New(env, "peerNetnsFd and peerNetnsPath are exclusive; give one");
  }
  FileDescriptor peerNetns;
  if (peerNetnsPath) peerNetns = OpenNetns(env, *peerNetnsPath);
  veth.peerNetnsFd = peerNetnsPath ? peerNetns.get() : peerNetnsFd ? static_cast<int>(*peerNetnsFd) : -1;
  Socket socket = OpenSocket(env, options);
  Status status = netlink::LinkAddVeth(socket, name, peerName, veth);
  if (status.ok()) status = peerNetns.Close();
  ThrowIfFailed(env, status, &socket);
  return env.Undefined();
}

Napi::Value LinkDelJs(const Napi::CallbackInfo& info) {
  std::string name = LinkNameArg(info, 0, "name");
  Socket socket = OpenSocket(info.Env(), OptionsArg(info, 1));
  ThrowIfFailed(info.Env(), netlink::LinkDel(socket, name), &socket);
  return info.Env().Undefined();
}

Napi::Value SetUpOrDown(const Napi::CallbackInfo& info, bool up) {
  std::string name = LinkNameArg(info, 0, "name");
  Socket socket = OpenSocket(info.Env(), OptionsArg(info, 1));
  ThrowIfFailed(info.Env(), netlink::LinkSetUp(socket, name, up), &socket);
  return info.Env().Undefined();
}

Napi::Value LinkSetUpJs(const Napi::CallbackInfo& info) { return SetUpOrDown(info, true); }
Napi::Value LinkSetDownJs(const Napi::CallbackInfo& info) { return SetUpOrDown(info, false); }

Napi::Value LinkSetMasterJs(const Napi::CallbackInfo& info) {
  std::string name = LinkNameArg(info, 0, "name");
  bool release = info.Length() > 1 && info[1].IsNull();
  std::string master = release ? "" : LinkNameArg(info, 1, "master (a link name, or null to release)");
  Socket socket = OpenSocket(info.Env(), OptionsArg(info, 2));
  ThrowIfFailed(info.Env(), netlink::LinkSetMaster(socket, name, master), &socket);
  return info.Env().Undefined();
}

Napi::Value LinkSetNetnsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = LinkNameArg(info, 0, "name");
  FileDescriptor target = OpenNetns(env, StringArg(info, 1, "netnsPath"));
  Socket socket = OpenSocket(env, OptionsArg(info, 2));
  Status status = netlink::LinkSetNetns(socket, name, target.get());
  if (status.ok()) status = target.Close();
  ThrowIfFailed(env, status, &socket);
  return env.Undefined();
}

Napi::Value LinkSetNameJs(const Napi::CallbackInfo& info) {
  std::string name = LinkNameArg(info, 0, "name");
  std::string newName = LinkNameArg(info, 1, "newName");
  Socket socket = OpenSocket(info.Env(), OptionsArg(info, 2));
  ThrowIfFailed(info.Env(), netlink::LinkSetName(socket, name, newName), &socket);
  return info.Env().Undefined();
}

Napi::Value LinkSetMtuJs(const Napi::CallbackInfo& info) {
  std::string name = LinkNameArg(info, 0, "name");
  uint32_t mtu = Uint32Arg(info, 1, "mtu");
  Socket socket = OpenSocket(info.Env(), OptionsArg(info, 2));
  ThrowIfFailed(info.Env(), netlink::LinkSetMtu(socket, name, mtu), &socket);
  return info.Env().Undefined();
}

Napi::Value LinkGetJs(const Napi::CallbackInfo& info) {
  std::string name = LinkNameArg(info, 0, "name");
  Socket socket = OpenSocket(info.Env(), OptionsArg(info, 1));
  LinkInfo link;
  ThrowIfFailed(info.Env(), netlink::LinkGet(socket, name, &link), &socket);
  return LinkToJs(info.Env(), link);
}

Napi::Value LinkListJs(const Napi::CallbackInfo& info) {
  Socket socket = OpenSocket(info.Env(), OptionsArg(info, 0));
  std::vector<LinkInfo> links;
  ThrowIfFailed(info.Env(), netlink::LinkList(socket, &links), &socket);
  return ToJsArray(info.Env(), links, LinkToJs);
}

// ---- addresses ----

IpPrefix CidrArg(const Napi::CallbackInfo& info, size_t index) {
  IpPrefix prefix;
  ThrowIfFailed(info.Env(), netlink::ParseIpPrefix(StringArg(info, index, "cidr"), &prefix));
  return prefix;
}

Napi::Value AddrAddJs(const Napi::CallbackInfo& info) {
  std::string name = LinkNameArg(info, 0, "name");
  IpPrefix prefix = CidrArg(info, 1);
  Socket socket = OpenSocket(info.Env(), OptionsArg(info, 2));
  ThrowIfFailed(info.Env(), netlink::AddrAdd(socket, name, prefix), &socket);
  return info.Env().Undefined();
}

Napi::Value AddrDelJs(const Napi::CallbackInfo& info) {
  std::string name = LinkNameArg(info, 0, "name");
  IpPrefix prefix = CidrArg(info, 1);
  Socket socket = OpenSocket(info.Env(), OptionsArg(info, 2));
  ThrowIfFailed(info.Env(), netlink::AddrDel(socket, name, prefix), &socket);
  return info.Env().Undefined();
}

Napi::Value AddrListJs(const Napi::CallbackInfo& info) {
  bool allLinks = info.Length() == 0 || info[0].IsUndefined() || info[0].IsNull();
  std::string name = allLinks ? "" : LinkNameArg(info, 0, "name");
  Socket socket = OpenSocket(info.Env(), OptionsArg(info, 1));
  std::vector<AddressInfo> addresses;
  ThrowIfFailed(info.Env(), netlink::AddrList(socket, name, &addresses), &socket);
  return ToJsArray(info.Env(), addresses, AddressToJs);
}

// ---- routes ----

int FamilyOption(Napi::Object object) {
  std::optional<uint32_t> family = OptionalUint32(object, "family");
  if (!family) return AF_UNSPEC;
  if (*family != 4 && *family != 6) throw Napi::TypeError::New(object.Env(), "family must be 4 or 6");
  return *family == 6 ? AF_INET6 : AF_INET;
}

// {dst: 'default' | cidr, gateway?, dev?, metric?, family?}; family only matters for a
// default route without a gateway, whose family nothing else tells (IPv4 by default).
RouteSpec RouteArg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() == 0 || !info[0].IsObject()) throw Napi::TypeError::New(env, "argument route must be an object");
  Napi::Object object = info[0].As<Napi::Object>();
  std::optional<std::string> destination = OptionalString(object, "dst");
  if (!destination) throw Napi::TypeError::New(env, "route.dst must be 'default' or a CIDR string");
  RouteSpec route;
  if (std::optional<std::string> gateway = OptionalString(object, "gateway")) {
    route.gateway.emplace();
    ThrowIfFailed(env, netlink::ParseIpAddress(*gateway, &*route.gateway));
  }
  if (*destination == "default") {
    int family = FamilyOption(object);
    if (family == AF_UNSPEC) family = route.gateway ? route.gateway->family : AF_INET;
    route.destination.address.family = family;
    route.destination.prefixLength = 0;
  } else {
    ThrowIfFailed(env, netlink::ParseIpPrefix(*destination, &route.destination));
  }
  route.device = OptionalString(object, "dev").value_or("");
  if (!route.device.empty()) ThrowIfFailed(env, netlink::ValidateLinkName(route.device));
  route.metric = OptionalUint32(object, "metric");
  return route;
}

Napi::Value RouteAddJs(const Napi::CallbackInfo& info) {
  RouteSpec route = RouteArg(info);
  Socket socket = OpenSocket(info.Env(), OptionsArg(info, 1));
  ThrowIfFailed(info.Env(), netlink::RouteAdd(socket, route), &socket);
  return info.Env().Undefined();
}

Napi::Value RouteDelJs(const Napi::CallbackInfo& info) {
  RouteSpec route = RouteArg(info);
  Socket socket = OpenSocket(info.Env(), OptionsArg(info, 1));
  ThrowIfFailed(info.Env(), netlink::RouteDel(socket, route), &socket);
  return info.Env().Undefined();
}

Napi::Value RouteListJs(const Napi::CallbackInfo& info) {
  Napi::Object options = OptionsArg(info, 0);
  int family = FamilyOption(options);
  Socket socket = OpenSocket(info.Env(), options);
  std::vector<RouteInfo> routes;
  ThrowIfFailed(info.Env(), netlink::RouteList(socket, family, &routes), &socket);
  return ToJsArray(info.Env(), routes, RouteToJs);
}

}  // namespace

void RegisterNetlink(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Function::Callback> functions[] = {
      {"linkAddBridge", LinkAddBridgeJs}, {"linkAddVeth", LinkAddVethJs},
      {"linkDel", LinkDelJs},             {"linkSetUp", LinkSetUpJs},
      {"linkSetDown", LinkSetDownJs},     {"linkSetMaster", LinkSetMasterJs},
      {"linkSetNetns", LinkSetNetnsJs},   {"linkSetName", LinkSetNameJs},
      {"linkSetMtu", LinkSetMtuJs},       {"linkGet", LinkGetJs},
      {"linkList", LinkListJs},           {"addrAdd", AddrAddJs},
      {"addrDel", AddrDelJs},             {"addrList", AddrListJs},
      {"routeAdd", RouteAddJs},           {"routeDel", RouteDelJs},
      {"routeList", RouteListJs},
  };
  for (const auto& [name, callback] : functions) exports.Set(name, Napi::Function::New(env, callback, name));
}

}  // namespace d2p
