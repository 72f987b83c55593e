// Interface addresses over rtnetlink: RTM_NEWADDR/RTM_DELADDR/RTM_GETADDR with struct
// ifaddrmsg and IFA_* attributes (rtnetlink(7), include/uapi/linux/if_addr.h).
#include <errno.h>
#include <linux/if_addr.h>
#include <sys/socket.h>

#include <cstring>
#include <map>

#include "netlink_ops.h"

namespace d2p::netlink {

namespace {

std::string DescribeAddress(const IpPrefix& prefix, const std::string& linkName) {
  return prefix.ToString() + " dev " + linkName;
}

// IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point
// links and equal to IFA_LOCAL otherwise. IPv6 addresses come with IFA_ADDRESS only.
// Sending both, as ip(8) does, is right for both families.
Status ChangeAddress(Socket& socket, uint16_t type, uint16_t flags, const std::string& linkName,
                     const IpPrefix& prefix) {
  int linkIndex = 0;
  Status status = LinkIndex(socket, linkName, &linkIndex);
  if (!status.ok()) return status;
  ifaddrmsg header{};
  header.ifa_family = static_cast<uint8_t>(prefix.address.family);
  header.ifa_prefixlen = static_cast<uint8_t>(prefix.prefixLength);
  header.ifa_scope = RT_SCOPE_UNIVERSE;
  header.ifa_index = static_cast<uint32_t>(linkIndex);
  Message message(type, flags);
  message.AddHeader(header);
  message.AddAttr(IFA_LOCAL, prefix.address.bytes, prefix.address.size());
  message.AddAttr(IFA_ADDRESS, prefix.address.bytes, prefix.address.size());
  return socket.Ack(message, DescribeAddress(prefix, linkName));
}

bool IsIpAddressMessage(const Reply& reply) {
  const ifaddrmsg* header = reply.Body<ifaddrmsg>();
  return reply.header()->nlmsg_type == RTM_NEWADDR && header != nullptr &&
         (header->ifa_family == AF_INET || header->ifa_family == AF_INET6);
}

Status ParseAddress(const Reply& reply, AddressInfo* out) {
  const ifaddrmsg* header = reply.Body<ifaddrmsg>();
  Attrs attrs = Attrs::Of<ifaddrmsg>(reply, IFA_MAX);
  const rtattr* local = attrs.Has(IFA_LOCAL) ? attrs.Get(IFA_LOCAL) : attrs.Get(IFA_ADDRESS);
  AddressInfo address;
  address.prefix.address.family = header->ifa_family;
  if (local == nullptr || RTA_PAYLOAD(local) != address.prefix.address.size()) {
    return Fail(EBADMSG, SyscallName(RTM_GETADDR), "ifindex " + std::to_string(header->ifa_index),
                "address message without a well-formed IFA_LOCAL or IFA_ADDRESS");
  }
  std::memcpy(address.prefix.address.bytes, RTA_DATA(local), RTA_PAYLOAD(local));
  address.prefix.prefixLength = header->ifa_prefixlen;
  address.linkIndex = static_cast<int>(header->ifa_index);
  *out = address;
  return Ok();
}

Status LinkNames(Socket& socket, std::map<int, std::string>* out) {
  std::vector<LinkInfo> links;
  Status status = LinkList(socket, &links);
  if (!status.ok()) return status;
  for (const LinkInfo& link : links) (*out)[link.index] = link.name;
  return Ok();
}

}  // namespace

Status AddrAdd(Socket& socket, const std::string& linkName, const IpPrefix& prefix) {
  return ChangeAddress(socket, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, linkName, prefix);
}

Status AddrDel(Socket& socket, const std::string& linkName, const IpPrefix& prefix) {
  Status status = ChangeAddress(socket, RTM_DELADDR, 0, linkName, prefix);
  if (status.err == EADDRNOTAVAIL && status.detail.empty()) status.detail = "the link has no such address";
  return status;
}

Status AddrList(Socket& socket, const std::string& linkName, std::vector<AddressInfo>* out) {
  int onlyIndex = 0;
  if (!linkName.empty()) {
    Status status = LinkIndex(socket, linkName, &onlyIndex);
    if (!status.ok()) return status;
  }
  std::map<int, std::string> nameOfIndex;
  Status status = LinkNames(socket, &nameOfIndex);
  if (!status.ok()) return status;
  Message message(RTM_GETADDR, 0);
  message.AddHeader(ifaddrmsg{});  // AF_UNSPEC: both families
  std::vector<Reply> replies;
  status = socket.Dump(message, &replies);
  if (!status.ok()) return status;
  std::vector<AddressInfo> addresses;
  for (const Reply& reply : replies) {
    if (!IsIpAddressMessage(reply)) continue;
    AddressInfo address;
    status = ParseAddress(reply, &address);
    if (!status.ok()) return status;
    if (onlyIndex != 0 && address.linkIndex != onlyIndex) continue;
    address.linkName = nameOfIndex[address.linkIndex];
    addresses.push_back(address);
  }
  *out = std::move(addresses);
  return Ok();
}

}  // namespace d2p::netlink
