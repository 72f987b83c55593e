// Routes of the main table over rtnetlink: RTM_NEWROUTE/RTM_DELROUTE/RTM_GETROUTE with
// struct rtmsg and RTA_* attributes (rtnetlink(7), include/uapi/linux/rtnetlink.h).
#include <errno.h>
#include <sys/socket.h>

#include <cstring>
#include <map>

#include "netlink_ops.h"

namespace d2p::netlink {

namespace {

struct NamedValue {
  unsigned value;
  const char* name;
};

// The names ip-route(8) prints (/etc/iproute2/rt_protos, rt_scopes and rtnl_rtntype_n2a).
constexpr NamedValue kProtocols[] = {{RTPROT_UNSPEC, "unspec"}, {RTPROT_REDIRECT, "redirect"},
                                     {RTPROT_KERNEL, "kernel"}, {RTPROT_BOOT, "boot"},
                                     {RTPROT_STATIC, "static"}, {RTPROT_RA, "ra"},
                                     {RTPROT_DHCP, "dhcp"}};
constexpr NamedValue kScopes[] = {{RT_SCOPE_UNIVERSE, "universe"}, {RT_SCOPE_SITE, "site"},
                                  {RT_SCOPE_LINK, "link"},         {RT_SCOPE_HOST, "host"},
                                  {RT_SCOPE_NOWHERE, "nowhere"}};
constexpr NamedValue kTypes[] = {{RTN_UNICAST, "unicast"},     {RTN_LOCAL, "local"},
                                 {RTN_BROADCAST, "broadcast"}, {RTN_ANYCAST, "anycast"},
                                 {RTN_MULTICAST, "multicast"}, {RTN_BLACKHOLE, "blackhole"},
                                 {RTN_UNREACHABLE, "unreachable"}, {RTN_PROHIBIT, "prohibit"},
                                 {RTN_THROW, "throw"},         {RTN_NAT, "nat"}};

template <size_t N>
std::string NameOf(const NamedValue (&table)[N], unsigned value) {
  for (const NamedValue& entry : table) {
    if (entry.value == value) return entry.name;
  }
  return std::to_string(value);
}

Status ValidateRoute(const RouteSpec& route) {
  if (route.gateway && route.gateway->family != route.destination.address.family) {
    return Fail(EINVAL, SyscallName(RTM_NEWROUTE), route.Describe(),
                "the gateway and the destination are of different address families");
  }
  if (!route.gateway && route.device.empty()) {
    return Fail(EINVAL, SyscallName(RTM_NEWROUTE), route.Describe(), "a route needs a gateway or a device");
  }
  return Ok();
}

// Deletion leaves protocol, type and scope unset (RT_SCOPE_NOWHERE) so that the kernel
// matches any value of them, as ip-route(8) does (fib_table_delete in net/ipv4/fib_trie.c).
Status ChangeRoute(Socket& socket, uint16_t type, uint16_t flags, const RouteSpec& route) {
  Status status = ValidateRoute(route);
  if (!status.ok()) return status;
  int deviceIndex = 0;
  if (!route.device.empty()) {
    status = LinkIndex(socket, route.device, &deviceIndex);
    if (!status.ok()) return status;
  }
  bool adding = type == RTM_NEWROUTE;
  rtmsg header{};
  header.rtm_family = static_cast<uint8_t>(route.destination.address.family);
  header.rtm_dst_len = static_cast<uint8_t>(route.destination.prefixLength);
  header.rtm_table = RT_TABLE_MAIN;
  header.rtm_protocol = adding ? RTPROT_BOOT : RTPROT_UNSPEC;
  // Without a gateway the destination is directly on the link (ip-route(8), "scope").
  header.rtm_scope = !adding ? RT_SCOPE_NOWHERE : route.gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
  header.rtm_type = adding ? RTN_UNICAST : RTN_UNSPEC;
  Message message(type, flags);
  message.AddHeader(header);
  const IpAddress& destination = route.destination.address;
  if (route.destination.prefixLength > 0) message.AddAttr(RTA_DST, destination.bytes, destination.size());
  if (route.gateway) message.AddAttr(RTA_GATEWAY, route.gateway->bytes, route.gateway->size());
  if (deviceIndex != 0) message.AddU32(RTA_OIF, static_cast<uint32_t>(deviceIndex));
  if (route.metric) message.AddU32(RTA_PRIORITY, *route.metric);
  return socket.Ack(message, route.Describe());
}

bool IsMainTableIpRoute(const Reply& reply, int familyFilter) {
  const rtmsg* header = reply.Body<rtmsg>();
  if (reply.header()->nlmsg_type != RTM_NEWROUTE || header == nullptr) return false;
  if (header->rtm_family != AF_INET && header->rtm_family != AF_INET6) return false;
  if (familyFilter != AF_UNSPEC && header->rtm_family != familyFilter) return false;
  if (header->rtm_flags & RTM_F_CLONED) return false;  // cache entries, not configured routes
  // Table ids above 255 only fit RTA_TABLE; rtm_table then says RT_TABLE_COMPAT.
  Attrs attrs = Attrs::Of<rtmsg>(reply, RTA_MAX);
  return attrs.U32(RTA_TABLE, header->rtm_table) == RT_TABLE_MAIN;
}

Status ReadAddressAttr(const Attrs& attrs, uint16_t type, int family, std::optional<IpAddress>* out) {
  const rtattr* attr = attrs.Get(type);
  if (attr == nullptr) return Ok();
  IpAddress address;
  address.family = family;
  if (RTA_PAYLOAD(attr) != address.size()) {
    return Fail(EBADMSG, SyscallName(RTM_GETROUTE), "", "route attribute of the wrong size");
  }
  std::memcpy(address.bytes, RTA_DATA(attr), address.size());
  *out = address;
  return Ok();
}

Status ParseRoute(const Reply& reply, const std::map<int, std::string>& nameOfIndex, RouteInfo* out) {
  const rtmsg* header = reply.Body<rtmsg>();
  Attrs attrs = Attrs::Of<rtmsg>(reply, RTA_MAX);
  RouteInfo route;
  route.family = header->rtm_family;
  route.destination.address.family = header->rtm_family;
  route.destination.prefixLength = header->rtm_dst_len;
  std::optional<IpAddress> destination;
  Status status = ReadAddressAttr(attrs, RTA_DST, header->rtm_family, &destination);
  if (!status.ok()) return status;
  if (destination) route.destination.address = *destination;
  status = ReadAddressAttr(attrs, RTA_GATEWAY, header->rtm_family, &route.gateway);
  if (!status.ok()) return status;
  status = ReadAddressAttr(attrs, RTA_PREFSRC, header->rtm_family, &route.preferredSource);
  if (!status.ok()) return status;
  if (attrs.Has(RTA_OIF)) {
    auto name = nameOfIndex.find(static_cast<int>(attrs.U32(RTA_OIF, 0)));
    if (name != nameOfIndex.end()) route.device = name->second;
  }
  if (attrs.Has(RTA_PRIORITY)) route.metric = attrs.U32(RTA_PRIORITY, 0);
  route.protocol = NameOf(kProtocols, header->rtm_protocol);
  route.scope = NameOf(kScopes, header->rtm_scope);
  route.type = NameOf(kTypes, header->rtm_type);
  *out = route;
  return Ok();
}

}  // namespace

std::string RouteSpec::Describe() const {
  std::string text = destination.prefixLength == 0 ? "default" : destination.ToString();
  if (gateway) text += " via " + gateway->ToString();
  if (!device.empty()) text += " dev " + device;
  if (metric) text += " metric " + std::to_string(*metric);
  return text;
}

Status RouteAdd(Socket& socket, const RouteSpec& route) {
  return ChangeRoute(socket, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, route);
}

Status RouteDel(Socket& socket, const RouteSpec& route) {
  Status status = ChangeRoute(socket, RTM_DELROUTE, 0, route);
  if (status.err == ESRCH && status.detail.empty()) status.detail = "no such route";
  return status;
}

Status RouteList(Socket& socket, int familyFilter, std::vector<RouteInfo>* out) {
  std::vector<LinkInfo> links;
  Status status = LinkList(socket, &links);
  if (!status.ok()) return status;
  std::map<int, std::string> nameOfIndex;
  for (const LinkInfo& link : links) nameOfIndex[link.index] = link.name;
  rtmsg header{};
  header.rtm_family = static_cast<uint8_t>(familyFilter);
  Message message(RTM_GETROUTE, 0);
  message.AddHeader(header);
  std::vector<Reply> replies;
  status = socket.Dump(message, &replies);
  if (!status.ok()) return status;
  std::vector<RouteInfo> routes;
  for (const Reply& reply : replies) {
    if (!IsMainTableIpRoute(reply, familyFilter)) continue;
    RouteInfo route;
    status = ParseRoute(reply, nameOfIndex, &route);
    if (!status.ok()) return status;
    routes.push_back(route);
  }
  *out = std::move(routes);
  return Ok();
}

}  // namespace d2p::netlink
