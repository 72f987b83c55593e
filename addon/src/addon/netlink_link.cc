// Links over rtnetlink: RTM_NEWLINK/RTM_DELLINK/RTM_GETLINK with struct ifinfomsg and
// IFLA_* attributes (rtnetlink(7), include/uapi/linux/if_link.h). Links are addressed by
// IFLA_IFNAME with ifi_index 0, which the kernel resolves itself (rtnl_dev_get in
// net/core/rtnetlink.c), so a missing link yields the kernel's own ENODEV.
#include <ctype.h>
#include <errno.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/veth.h>

#include <cstdio>
#include <map>

#include "netlink_ops.h"

namespace d2p::netlink {

namespace {

const char* const kOperStateNames[] = {"UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN",
                                       "TESTING", "DORMANT",    "UP"};

Message LinkRequest(uint16_t type, uint16_t flags, const ifinfomsg& header) {
  Message message(type, flags);
  message.AddHeader(header);
  return message;
}

// A request naming an existing link.
Message NamedLinkRequest(uint16_t type, const std::string& name, const ifinfomsg& header = {}) {
  Message message = LinkRequest(type, 0, header);
  message.AddString(IFLA_IFNAME, name);
  return message;
}

Status ExplainMissingLink(Status status) {
  if (status.err == ENODEV && status.detail.empty()) status.detail = "no such link";
  return status;
}

void AddLinkKind(Message& message, const char* kind) {
  size_t linkInfo = message.BeginNest(IFLA_LINKINFO);
  message.AddString(IFLA_INFO_KIND, kind);
  message.EndNest(linkInfo);
}

std::string FormatMac(const rtattr* attr) {
  std::string text;
  const auto* bytes = static_cast<const uint8_t*>(RTA_DATA(attr));
  for (size_t i = 0; i < RTA_PAYLOAD(attr); i++) {
    char octet[4];
    std::snprintf(octet, sizeof(octet), i == 0 ? "%02x" : ":%02x", bytes[i]);
    text += octet;
  }
  return text;
}

// Links without IFLA_INFO_KIND are not made by a link driver: loopback, physical NICs.
std::string LinkType(const ifinfomsg& header, const Attrs& attrs) {
  std::string kind = attrs.Nested(IFLA_LINKINFO, IFLA_INFO_MAX).String(IFLA_INFO_KIND);
  if (!kind.empty()) return kind;
  return header.ifi_type == ARPHRD_LOOPBACK ? "loopback" : "device";
}

Status ParseLink(const Reply& reply, LinkInfo* out) {
  const ifinfomsg* header = reply.Body<ifinfomsg>();
  if (header == nullptr) return Fail(EBADMSG, SyscallName(RTM_GETLINK), "", "truncated link message");
  Attrs attrs = Attrs::Of<ifinfomsg>(reply, IFLA_MAX);
  LinkInfo link;
  link.index = header->ifi_index;
  link.name = attrs.String(IFLA_IFNAME);
  link.kind = LinkType(*header, attrs);
  link.mtu = attrs.U32(IFLA_MTU, 0);
  link.up = (header->ifi_flags & IFF_UP) != 0;
  const rtattr* operState = attrs.Get(IFLA_OPERSTATE);
  uint8_t state = operState != nullptr ? *static_cast<const uint8_t*>(RTA_DATA(operState)) : 0;
  link.operState = state <= IF_OPER_UP ? kOperStateNames[state] : std::to_string(state);
  if (const rtattr* mac = attrs.Get(IFLA_ADDRESS)) link.macAddress = FormatMac(mac);
  link.masterIndex = static_cast<int>(attrs.U32(IFLA_MASTER, 0));
  *out = link;
  return Ok();
}

Status GetLinkReply(Socket& socket, const std::string& name, Reply* reply) {
  Message message = NamedLinkRequest(RTM_GETLINK, name);
  // Counters are not wanted and make each answer several hundred bytes larger.
  message.AddU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  return ExplainMissingLink(socket.Get(message, name, reply));
}

Status LinkNameOfIndex(Socket& socket, int index, std::string* name) {
  ifinfomsg header{};
  header.ifi_index = index;
  Message message = LinkRequest(RTM_GETLINK, 0, header);
  message.AddU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  Reply reply;
  Status status = socket.Get(message, "ifindex " + std::to_string(index), &reply);
  if (!status.ok()) return status;
  LinkInfo link;
  status = ParseLink(reply, &link);
  if (!status.ok()) return status;
  *name = link.name;
  return Ok();
}

}  // namespace

Status ValidateLinkName(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return Fail(EINVAL, "netlink", name,
                "link names are 1 to " + std::to_string(IFNAMSIZ - 1) + " bytes long");
  }
  if (name == "." || name == "..") return Fail(EINVAL, "netlink", name, "'.' and '..' are not link names");
  for (char c : name) {
    if (c == '/' || c == ':' || c == '\0' || isspace(static_cast<unsigned char>(c))) {
      return Fail(EINVAL, "netlink", name, "link names cannot contain '/', ':', NUL or whitespace");
    }
  }
  return Ok();
}

Status LinkAddBridge(Socket& socket, const std::string& name, std::optional<uint32_t> mtu) {
  Message message = LinkRequest(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, ifinfomsg{});
  message.AddString(IFLA_IFNAME, name);
  if (mtu) message.AddU32(IFLA_MTU, *mtu);
  AddLinkKind(message, "bridge");
  return socket.Ack(message, name);
}

// The peer is described by a second ifinfomsg plus attributes inside
// IFLA_LINKINFO/IFLA_INFO_DATA/VETH_INFO_PEER (drivers/net/veth.c, veth_newlink).
Status LinkAddVeth(Socket& socket, const std::string& name, const std::string& peerName,
                   const VethOptions& options) {
  Message message = LinkRequest(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, ifinfomsg{});
  message.AddString(IFLA_IFNAME, name);
  if (options.mtu) message.AddU32(IFLA_MTU, *options.mtu);
  size_t linkInfo = message.BeginNest(IFLA_LINKINFO);
  message.AddString(IFLA_INFO_KIND, "veth");
  size_t infoData = message.BeginNest(IFLA_INFO_DATA);
  size_t peer = message.BeginNest(VETH_INFO_PEER);
  ifinfomsg peerHeader{};
  message.AddRaw(&peerHeader, sizeof(peerHeader));
  message.AddString(IFLA_IFNAME, peerName);
  if (options.mtu) message.AddU32(IFLA_MTU, *options.mtu);
  if (options.peerNetnsFd >= 0) message.AddU32(IFLA_NET_NS_FD, static_cast<uint32_t>(options.peerNetnsFd));
  message.EndNest(peer);
  message.EndNest(infoData);
  message.EndNest(linkInfo);
  return socket.Ack(message, name + " (peer " + peerName + ")");
}

Status LinkDel(Socket& socket, const std::string& name) {
  Message message = NamedLinkRequest(RTM_DELLINK, name);
  return ExplainMissingLink(socket.Ack(message, name));
}

Status LinkSetUp(Socket& socket, const std::string& name, bool up) {
  ifinfomsg header{};
  header.ifi_change = IFF_UP;  // only this flag is changed, the others are kept
  header.ifi_flags = up ? IFF_UP : 0;
  Message message = NamedLinkRequest(RTM_NEWLINK, name, header);
  return ExplainMissingLink(socket.Ack(message, name));
}

Status LinkSetMaster(Socket& socket, const std::string& name, const std::string& masterName) {
  int masterIndex = 0;  // IFLA_MASTER 0 releases the link from its master (do_set_master)
  if (!masterName.empty()) {
    Status status = LinkIndex(socket, masterName, &masterIndex);
    if (!status.ok()) return status;
  }
  Message message = NamedLinkRequest(RTM_NEWLINK, name);
  message.AddU32(IFLA_MASTER, static_cast<uint32_t>(masterIndex));
  return ExplainMissingLink(socket.Ack(message, name));
}

Status LinkSetNetns(Socket& socket, const std::string& name, int netnsFd) {
  Message message = NamedLinkRequest(RTM_NEWLINK, name);
  message.AddU32(IFLA_NET_NS_FD, static_cast<uint32_t>(netnsFd));
  return ExplainMissingLink(socket.Ack(message, name));
}

// With ifi_index set, IFLA_IFNAME is the new name rather than the selector.
Status LinkSetName(Socket& socket, const std::string& name, const std::string& newName) {
  ifinfomsg header{};
  Status status = LinkIndex(socket, name, &header.ifi_index);
  if (!status.ok()) return status;
  Message message = LinkRequest(RTM_NEWLINK, 0, header);
  message.AddString(IFLA_IFNAME, newName);
  return ExplainMissingLink(socket.Ack(message, name + " -> " + newName));
}

Status LinkSetMtu(Socket& socket, const std::string& name, uint32_t mtu) {
  Message message = NamedLinkRequest(RTM_NEWLINK, name);
  message.AddU32(IFLA_MTU, mtu);
  return ExplainMissingLink(socket.Ack(message, name));
}

Status LinkIndex(Socket& socket, const std::string& name, int* index) {
  Reply reply;
  Status status = GetLinkReply(socket, name, &reply);
  if (!status.ok()) return status;
  const ifinfomsg* header = reply.Body<ifinfomsg>();
  if (header == nullptr) return Fail(EBADMSG, SyscallName(RTM_GETLINK), name, "truncated link message");
  *index = header->ifi_index;
  return Ok();
}

Status LinkGet(Socket& socket, const std::string& name, LinkInfo* out) {
  Reply reply;
  Status status = GetLinkReply(socket, name, &reply);
  if (!status.ok()) return status;
  LinkInfo link;
  status = ParseLink(reply, &link);
  if (!status.ok()) return status;
  if (link.masterIndex != 0) {
    status = LinkNameOfIndex(socket, link.masterIndex, &link.masterName);
    if (!status.ok()) return status;
  }
  *out = link;
  return Ok();
}

Status LinkList(Socket& socket, std::vector<LinkInfo>* out) {
  Message message = LinkRequest(RTM_GETLINK, 0, ifinfomsg{});
  message.AddU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  std::vector<Reply> replies;
  Status status = socket.Dump(message, &replies);
  if (!status.ok()) return status;
  std::vector<LinkInfo> links;
  std::map<int, std::string> nameOfIndex;
  for (const Reply& reply : replies) {
    if (reply.header()->nlmsg_type != RTM_NEWLINK) continue;
    LinkInfo link;
    status = ParseLink(reply, &link);
    if (!status.ok()) return status;
    nameOfIndex[link.index] = link.name;
    links.push_back(link);
  }
  for (LinkInfo& link : links) {
    if (link.masterIndex != 0) link.masterName = nameOfIndex[link.masterIndex];
  }
  *out = std::move(links);
  return Ok();
}

}  // namespace d2p::netlink
