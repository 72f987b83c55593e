// Low-level, idempotent-where-the-kernel-is rtnetlink operations on links, addresses and
// routes (DESIGN.md §10: no decisions in C++). Each takes an open Socket, so it acts in
// that socket's network namespace, and returns a Status naming the object involved.
#pragma once
#include <stdint.h>

#include <optional>
#include <string>
#include <vector>

#include "netlink_error.h"
#include "netlink_socket.h"

namespace d2p::netlink {

// ---- IP addresses ----

struct IpAddress {
  int family = 0;       // AF_INET or AF_INET6
  uint8_t bytes[16] = {};
  size_t size() const;  // 4 or 16
  std::string ToString() const;
};

struct IpPrefix {
  IpAddress address;
  int prefixLength = 0;
  std::string ToString() const;  // "10.0.0.1/24"
};

// "10.0.0.1" or "fd00::1"; EINVAL with a clear detail otherwise.
Status ParseIpAddress(const std::string& text, IpAddress* out);
// "10.0.0.1/24", "fd00::1/64"; a bare address means a host prefix (/32, /128), as ip(8) does.
Status ParseIpPrefix(const std::string& text, IpPrefix* out);

// ---- links ----

struct LinkInfo {
  int index = 0;
  std::string name;
  std::string kind;        // IFLA_INFO_KIND: "bridge", "veth", ...; empty for e.g. loopback
  uint32_t mtu = 0;
  bool up = false;         // IFF_UP: administratively up
  std::string operState;   // IFLA_OPERSTATE as ip(8) prints it: "UP", "DOWN", "UNKNOWN", ...
  std::string macAddress;  // IFLA_ADDRESS as aa:bb:cc:dd:ee:ff; empty when the link has none
  int masterIndex = 0;
  std::string masterName;  // empty when the link has no master
};

struct VethOptions {
  std::optional<uint32_t> mtu;
  int peerNetnsFd = -1;  // the peer is created directly in that namespace when ≥ 0
};

// Link names must fit IFNAMSIZ and pass dev_valid_name() (net/core/dev.c).
Status ValidateLinkName(const std::string& name);

Status LinkAddBridge(Socket& socket, const std::string& name, std::optional<uint32_t> mtu);
Status LinkAddVeth(Socket& socket, const std::string& name, const std::string& peerName,
                   const VethOptions& options);
Status LinkDel(Socket& socket, const std::string& name);
Status LinkSetUp(Socket& socket, const std::string& name, bool up);
// An empty masterName removes the link from its master (ip link set X nomaster).
Status LinkSetMaster(Socket& socket, const std::string& name, const std::string& masterName);
Status LinkSetNetns(Socket& socket, const std::string& name, int netnsFd);
Status LinkSetName(Socket& socket, const std::string& name, const std::string& newName);
Status LinkSetMtu(Socket& socket, const std::string& name, uint32_t mtu);
Status LinkGet(Socket& socket, const std::string& name, LinkInfo* out);
Status LinkList(Socket& socket, std::vector<LinkInfo>* out);
Status LinkIndex(Socket& socket, const std::string& name, int* index);

// ---- addresses ----

struct AddressInfo {
  int linkIndex = 0;
  std::string linkName;
  IpPrefix prefix;
};

Status AddrAdd(Socket& socket, const std::string& linkName, const IpPrefix& prefix);
Status AddrDel(Socket& socket, const std::string& linkName, const IpPrefix& prefix);
// Every address, or only those of linkName when it is not empty.
Status AddrList(Socket& socket, const std::string& linkName, std::vector<AddressInfo>* out);

// ---- routes (main table) ----

struct RouteSpec {
  IpPrefix destination;  // prefixLength 0 for "default"
  std::optional<IpAddress> gateway;
  std::string device;    // empty: the kernel picks it from the gateway
  std::optional<uint32_t> metric;
  std::string Describe() const;  // "default via 10.0.0.1 dev eth0", for errors
};

struct RouteInfo {
  int family = 0;
  IpPrefix destination;
  std::optional<IpAddress> gateway;
  std::optional<IpAddress> preferredSource;
  std::string device;
  std::optional<uint32_t> metric;
  std::string protocol;  // "kernel", "boot", "static", ... or the number
  std::string scope;     // "universe", "link", "host", ... or the number
  std::string type;      // "unicast", "local", "unreachable", ... or the number
};

Status RouteAdd(Socket& socket, const RouteSpec& route);
Status RouteDel(Socket& socket, const RouteSpec& route);
// familyFilter: AF_UNSPEC for both families.
Status RouteList(Socket& socket, int familyFilter, std::vector<RouteInfo>* out);

}  // namespace d2p::netlink
