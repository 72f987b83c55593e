// A NETLINK_ROUTE socket (rtnetlink(7)), opened in a chosen network namespace, with
// request building, ACK checking and dumps. No libnl: the protocol is small and the
// kernel's answers (errno, extended ACK text) are passed on untouched.
#pragma once
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "netlink_error.h"

namespace d2p::netlink {

// One request: nlmsghdr, the family header (ifinfomsg, ifaddrmsg, rtmsg) and attributes.
class Message {
 public:
  Message(uint16_t type, uint16_t flags);

  // Copies the family header in; a pointer into the buffer would dangle once it grows.
  template <typename Header>
  void AddHeader(const Header& header) {
    Append(&header, sizeof(Header));
  }
  // Appends raw bytes (e.g. the ifinfomsg that starts a VETH_INFO_PEER payload).
  void AddRaw(const void* data, size_t length) { Append(data, length); }
  void AddAttr(uint16_t type, const void* data, size_t length);
  void AddString(uint16_t type, const std::string& value);  // NUL included, as the kernel wants
  void AddU32(uint16_t type, uint32_t value);
  // Returns the offset of the nest's rtattr, to be passed to EndNest.
  size_t BeginNest(uint16_t type);
  void EndNest(size_t nestOffset);

  uint16_t type() const;
  nlmsghdr* header();
  size_t size() const { return buffer_.size(); }

 private:
  size_t Append(const void* data, size_t length);
  std::vector<uint8_t> buffer_;
};

// A received message, copied out of the receive buffer.
struct Reply {
  std::vector<uint8_t> bytes;
  const nlmsghdr* header() const { return reinterpret_cast<const nlmsghdr*>(bytes.data()); }
  // The family header that follows nlmsghdr, or null when the message is too short.
  template <typename Header>
  const Header* Body() const {
    if (header()->nlmsg_len < NLMSG_LENGTH(sizeof(Header))) return nullptr;
    return reinterpret_cast<const Header*>(NLMSG_DATA(header()));
  }
};

// Attributes of one message or nest, indexed by type (nested-flag stripped).
class Attrs {
 public:
  Attrs(const void* first, size_t length, uint16_t maxType);
  // Attributes after the family header of a reply.
  template <typename Header>
  static Attrs Of(const Reply& reply, uint16_t maxType) {
    const nlmsghdr* header = reply.header();
    const uint8_t* start = static_cast<const uint8_t*>(NLMSG_DATA(header)) + NLMSG_ALIGN(sizeof(Header));
    size_t end = header->nlmsg_len - NLMSG_LENGTH(0);
    size_t length = end > NLMSG_ALIGN(sizeof(Header)) ? end - NLMSG_ALIGN(sizeof(Header)) : 0;
    return Attrs(start, length, maxType);
  }
  const rtattr* Get(uint16_t type) const;
  bool Has(uint16_t type) const { return Get(type) != nullptr; }
  std::string String(uint16_t type) const;   // empty when absent
  uint32_t U32(uint16_t type, uint32_t fallback) const;
  Attrs Nested(uint16_t type, uint16_t maxType) const;  // empty when absent

 private:
  std::vector<const rtattr*> byType_;
};

// An owned file descriptor (e.g. of a network namespace file), closed on destruction.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  FileDescriptor(FileDescriptor&& other) noexcept;
  FileDescriptor& operator=(FileDescriptor&& other) noexcept;
  ~FileDescriptor();
  int get() const { return fd_; }
  // Closes now, reporting the error a destructor could not.
  Status Close();

 private:
  friend Status OpenNetnsFile(const std::string& path, FileDescriptor* out);
  int fd_ = -1;
};

// Opens /proc/PID/ns/net, /run/netns/NAME or a bind mount of one, read-only.
Status OpenNetnsFile(const std::string& path, FileDescriptor* out);

class Socket {
 public:
  Socket() = default;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  Socket(Socket&& other) noexcept;
  Socket& operator=(Socket&& other) noexcept;
  ~Socket();

  // Opens the socket in the namespace of netnsPath (the caller's own when empty).
  static Status Open(const std::string& netnsPath, Socket* out);

  // Sends with NLM_F_ACK and waits for the kernel's ACK; its errno becomes the status.
  Status Ack(Message& message, const std::string& object);
  // Sends a non-dump GET and returns its single answer.
  Status Get(Message& message, const std::string& object, Reply* reply);
  // Sends an NLM_F_DUMP request and collects every answer up to NLMSG_DONE; a dump the
  // kernel marks as interrupted (NLM_F_DUMP_INTR) is repeated.
  Status Dump(Message& message, std::vector<Reply>* replies);

  const std::string& netnsPath() const { return netnsPath_; }

 private:
  Status Configure();
  Status Send(Message& message, const std::string& object);
  // Receives one datagram of messages answering `seq`; other messages are skipped.
  Status Receive(uint32_t seq, const std::string& syscall, const std::string& object,
                 std::vector<Reply>* replies);
  Status DumpOnce(Message& message, std::vector<Reply>* replies, bool* interrupted);
  Status WithNetns(Status status) const;

  int fd_ = -1;
  uint32_t seq_ = 0;
  std::string netnsPath_;
};

// "RTM_NEWLINK" for the message types we send; "netlink" is prefixed by callers.
std::string MessageTypeName(uint16_t type);
std::string SyscallName(uint16_t type);

}  // namespace d2p::netlink
