// Textual IP addresses and prefixes, parsed with inet_pton(3) so that only the forms
// the C library accepts (dotted quad, RFC 4291 IPv6 text) get through.
#include <arpa/inet.h>
#include <errno.h>
#include <sys/socket.h>


#include "netlink_ops.h"

namespace d2p::netlink {

size_t IpAddress::size() const { return family == AF_INET6 ? 16 : 4; }

std::string IpAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = {};
  // Cannot fail: the family is one of the two we set and the buffer fits both.
  inet_ntop(family, bytes, text, sizeof(text));
  return text;
}

std::string IpPrefix::ToString() const {
  return address.ToString() + "/" + std::to_string(prefixLength);
}

Status ParseIpAddress(const std::string& text, IpAddress* out) {
  IpAddress address;
  if (inet_pton(AF_INET, text.c_str(), address.bytes) == 1) {
    address.family = AF_INET;
  } else if (inet_pton(AF_INET6, text.c_str(), address.bytes) == 1) {
    address.family = AF_INET6;
  } else {
    return Fail(EINVAL, "inet_pton", text, "not an IPv4 or IPv6 address");
  }
  *out = address;
  return Ok();
}

namespace {

// Strict decimal: no sign, no spaces, no leading "0x" that strtol would take.
bool ParsePrefixLength(const std::string& text, int maximum, int* out) {
  if (text.empty() || text.size() > 3) return false;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  if (value > maximum) return false;
  *out = value;
  return true;
}

}  // namespace

Status ParseIpPrefix(const std::string& text, IpPrefix* out) {
  size_t slash = text.find('/');
  IpPrefix prefix;
  Status status = ParseIpAddress(text.substr(0, slash), &prefix.address);
  if (!status.ok()) {
    status.object = text;
    status.detail = "not a CIDR address such as 10.0.0.1/24 or fd00::1/64";
    return status;
  }
  int maximum = static_cast<int>(prefix.address.size() * 8);
  prefix.prefixLength = maximum;
  if (slash != std::string::npos &&
      !ParsePrefixLength(text.substr(slash + 1), maximum, &prefix.prefixLength)) {
    return Fail(EINVAL, "inet_pton", text,
                "prefix length must be a number from 0 to " + std::to_string(maximum));
  }
  *out = prefix;
  return Ok();
}

}  // namespace d2p::netlink
