// rtnetlink socket plumbing; see netlink(7), rtnetlink(7) and the kernel's
// Documentation/userspace-api/netlink/intro.rst for the message and ACK formats.
#include "netlink_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <system_error>
#include <thread>
#include <utility>

namespace d2p::netlink {

namespace {

// A dump answer never exceeds 32 KiB: the kernel caps its dump skbs at the largest
// receive buffer seen, itself capped at 32 KiB (net/netlink/af_netlink.c, netlink_dump).
constexpr size_t kReceiveBufferSize = 64 * 1024;
// A dump that keeps being interrupted by concurrent changes is given up after this many tries.
constexpr int kDumpAttempts = 5;

struct MessageTypeNameEntry {
  uint16_t type;
  const char* name;
};

constexpr MessageTypeNameEntry kMessageTypeNames[] = {
    {RTM_NEWLINK, "RTM_NEWLINK"}, {RTM_DELLINK, "RTM_DELLINK"},   {RTM_GETLINK, "RTM_GETLINK"},
    {RTM_NEWADDR, "RTM_NEWADDR"}, {RTM_DELADDR, "RTM_DELADDR"},   {RTM_GETADDR, "RTM_GETADDR"},
    {RTM_NEWROUTE, "RTM_NEWROUTE"}, {RTM_DELROUTE, "RTM_DELROUTE"}, {RTM_GETROUTE, "RTM_GETROUTE"},
};

Status OpenRouteSocketHere(int* fd) {
  *fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (*fd < 0) return FailErrno("socket", "", "opening a NETLINK_ROUTE socket");
  return Ok();
}

// A netlink socket belongs to the namespace it was created in for its whole life
// (netlink(7); sock_net() is fixed at creation), so creating it on a short-lived thread
// that joined the target namespace gives a socket working there while Node's main
// thread never leaves its own namespace. setns(2): a net namespace may be joined by one
// thread of a multithreaded process, and the change dies with the thread.
Status OpenRouteSocketInNetns(const std::string& netnsPath, int* fd) {
  FileDescriptor netns;
  Status status = OpenNetnsFile(netnsPath, &netns);
  if (!status.ok()) return status;
  try {
    std::thread opener([&] {
      if (setns(netns.get(), CLONE_NEWNET) < 0) {
        int err = errno;
        status = Fail(err, "setns", "", err == EINVAL ? "the file is not a network namespace" : "");
        return;
      }
      status = OpenRouteSocketHere(fd);
    });
    opener.join();
  } catch (const std::system_error& error) {
    status = Fail(error.code().value(), "pthread_create", "",
                  "starting the thread that joins the namespace");
  }
  if (status.ok()) status = netns.Close();
  if (!status.ok()) status.path = netnsPath;
  return status;
}

Status ErrorOfAck(const Reply& reply, const std::string& syscall, const std::string& object) {
  const nlmsghdr* header = reply.header();
  const nlmsgerr* ack = reply.Body<nlmsgerr>();
  if (ack == nullptr) return Fail(EBADMSG, syscall, object, "truncated NLMSG_ERROR from the kernel");
  if (ack->error == 0) return Ok();
  std::string kernelMessage;
  // Extended ACK (kernel ≥ 4.12): TLVs follow nlmsgerr, after the echoed request unless
  // NLM_F_CAPPED says it was left out (we ask for that with NETLINK_CAP_ACK).
  if (header->nlmsg_flags & NLM_F_ACK_TLVS) {
    size_t offset = NLMSG_LENGTH(sizeof(nlmsgerr));
    if (!(header->nlmsg_flags & NLM_F_CAPPED)) offset += NLMSG_ALIGN(ack->msg.nlmsg_len - NLMSG_HDRLEN);
    if (offset < header->nlmsg_len) {
      Attrs tlvs(reply.bytes.data() + offset, header->nlmsg_len - offset, NLMSGERR_ATTR_MAX);
      kernelMessage = tlvs.String(NLMSGERR_ATTR_MSG);
    }
  }
  return Fail(-ack->error, syscall, object, kernelMessage.empty() ? "" : "kernel: " + kernelMessage);
}

}  // namespace

std::string MessageTypeName(uint16_t type) {
  for (const auto& entry : kMessageTypeNames) {
    if (entry.type == type) return entry.name;
  }
  return "message type " + std::to_string(type);
}

std::string SyscallName(uint16_t type) { return "netlink " + MessageTypeName(type); }

// ---- Message ----

Message::Message(uint16_t type, uint16_t flags) {
  Append(nullptr, sizeof(nlmsghdr));
  header()->nlmsg_type = type;
  header()->nlmsg_flags = NLM_F_REQUEST | flags;
}

size_t Message::Append(const void* data, size_t length) {
  size_t offset = buffer_.size();
  buffer_.resize(offset + NLMSG_ALIGN(length), 0);
  if (data != nullptr) std::memcpy(buffer_.data() + offset, data, length);
  header()->nlmsg_len = static_cast<uint32_t>(buffer_.size());
  return offset;
}

void Message::AddAttr(uint16_t type, const void* data, size_t length) {
  rtattr attr{};
  attr.rta_type = type;
  attr.rta_len = static_cast<unsigned short>(RTA_LENGTH(length));
  Append(&attr, sizeof(attr));
  Append(data, length);
}

void Message::AddString(uint16_t type, const std::string& value) {
  AddAttr(type, value.c_str(), value.size() + 1);
}

void Message::AddU32(uint16_t type, uint32_t value) { AddAttr(type, &value, sizeof(value)); }

size_t Message::BeginNest(uint16_t type) {
  rtattr attr{};
  attr.rta_type = type;
  return Append(&attr, sizeof(attr));
}

void Message::EndNest(size_t nestOffset) {
  auto* attr = reinterpret_cast<rtattr*>(buffer_.data() + nestOffset);
  attr->rta_len = static_cast<unsigned short>(buffer_.size() - nestOffset);
}

uint16_t Message::type() const {
  return reinterpret_cast<const nlmsghdr*>(buffer_.data())->nlmsg_type;
}

nlmsghdr* Message::header() { return reinterpret_cast<nlmsghdr*>(buffer_.data()); }

// ---- Attrs ----

Attrs::Attrs(const void* first, size_t length, uint16_t maxType) : byType_(maxType + 1u, nullptr) {
  auto* attr = static_cast<const rtattr*>(first);
  int remaining = static_cast<int>(length);
  for (; RTA_OK(attr, remaining); attr = RTA_NEXT(attr, remaining)) {
    uint16_t type = attr->rta_type & NLA_TYPE_MASK;
    if (type <= maxType) byType_[type] = attr;
  }
}

const rtattr* Attrs::Get(uint16_t type) const {
  return type < byType_.size() ? byType_[type] : nullptr;
}

std::string Attrs::String(uint16_t type) const {
  const rtattr* attr = Get(type);
  if (attr == nullptr) return "";
  const char* data = static_cast<const char*>(RTA_DATA(attr));
  return std::string(data, strnlen(data, RTA_PAYLOAD(attr)));
}

uint32_t Attrs::U32(uint16_t type, uint32_t fallback) const {
  const rtattr* attr = Get(type);
  if (attr == nullptr || RTA_PAYLOAD(attr) < sizeof(uint32_t)) return fallback;
  uint32_t value;
  std::memcpy(&value, RTA_DATA(attr), sizeof(value));
  return value;
}

Attrs Attrs::Nested(uint16_t type, uint16_t maxType) const {
  const rtattr* attr = Get(type);
  if (attr == nullptr) return Attrs(nullptr, 0, maxType);
  return Attrs(RTA_DATA(attr), RTA_PAYLOAD(attr), maxType);
}

// ---- FileDescriptor ----

FileDescriptor::FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& other) noexcept {
  std::swap(fd_, other.fd_);
  return *this;
}

// Only reached on error paths, where the first error is the one worth reporting; closing
// a read-only descriptor loses no data (close(2), "Dealing with error returns").
FileDescriptor::~FileDescriptor() {
  if (fd_ >= 0) close(fd_);
}

Status FileDescriptor::Close() {
  int fd = std::exchange(fd_, -1);
  if (fd >= 0 && close(fd) < 0) return FailErrno("close", "", "closing a network namespace file");
  return Ok();
}

Status OpenNetnsFile(const std::string& path, FileDescriptor* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    Status status = FailErrno("open", "", "opening the network namespace file");
    status.path = path;
    return status;
  }
  FileDescriptor opened;
  opened.fd_ = fd;
  *out = std::move(opened);
  return Ok();
}

// ---- Socket ----

Socket::Socket(Socket&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), seq_(other.seq_), netnsPath_(std::move(other.netnsPath_)) {}

Socket& Socket::operator=(Socket&& other) noexcept {
  std::swap(fd_, other.fd_);
  std::swap(seq_, other.seq_);
  std::swap(netnsPath_, other.netnsPath_);
  return *this;
}

// close(2) of a netlink socket has nothing left to flush, and a destructor has nobody to
// report to; the only possible failure (EBADF) would be a bug caught by the owner's tests.
Socket::~Socket() {
  if (fd_ >= 0) close(fd_);
}

Status Socket::Open(const std::string& netnsPath, Socket* out) {
  Socket socket;
  socket.netnsPath_ = netnsPath;
  Status status = netnsPath.empty() ? OpenRouteSocketHere(&socket.fd_)
                                    : OpenRouteSocketInNetns(netnsPath, &socket.fd_);
  if (!status.ok()) return status;
  status = socket.Configure();
  if (!status.ok()) return status;
  *out = std::move(socket);
  return Ok();
}

Status Socket::Configure() {
  int on = 1;
  // Extended ACKs give the kernel's own explanation; capped ACKs leave out the echo of
  // our request. Both are optional (ENOPROTOOPT on kernels before 4.12 / 4.3).
  for (int option : {NETLINK_EXT_ACK, NETLINK_CAP_ACK}) {
    if (setsockopt(fd_, SOL_NETLINK, option, &on, sizeof(on)) < 0 && errno != ENOPROTOOPT) {
      return WithNetns(FailErrno("setsockopt", "", "configuring the netlink socket"));
    }
  }
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;  // nl_pid 0: the kernel assigns a unique port id
  if (bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local)) < 0) {
    return WithNetns(FailErrno("bind", "", "binding the netlink socket"));
  }
  return Ok();
}

Status Socket::WithNetns(Status status) const {
  status.path = netnsPath_;
  return status;
}

Status Socket::Send(Message& message, const std::string& object) {
  message.header()->nlmsg_seq = ++seq_;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  for (;;) {
    ssize_t sent = sendto(fd_, message.header(), message.size(), 0,
                          reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
    int err = errno;
    if (sent < 0 && err == EINTR) continue;
    if (sent < 0) return WithNetns(Fail(err, SyscallName(message.type()), object, "sendto"));
    if (static_cast<size_t>(sent) != message.size()) {
      return WithNetns(Fail(EIO, SyscallName(message.type()), object, "short send to the kernel"));
    }
    return Ok();
  }
}

Status Socket::Receive(uint32_t seq, const std::string& syscall, const std::string& object,
                       std::vector<Reply>* replies) {
  std::vector<uint8_t> buffer(kReceiveBufferSize);
  sockaddr_nl sender{};
  iovec io{buffer.data(), buffer.size()};
  msghdr header{};
  header.msg_name = &sender;
  header.msg_namelen = sizeof(sender);
  header.msg_iov = &io;
  header.msg_iovlen = 1;
  ssize_t received;
  int err;
  do {
    received = recvmsg(fd_, &header, 0);
    err = errno;
  } while (received < 0 && err == EINTR);
  if (received < 0) return WithNetns(Fail(err, syscall, object, "recvmsg"));
  if (header.msg_flags & MSG_TRUNC) {
    return WithNetns(Fail(EMSGSIZE, syscall, object, "kernel answer larger than the receive buffer"));
  }
  // Only the kernel (port 0) may answer; anything else is not ours to trust.
  if (sender.nl_pid != 0) return Ok();
  int remaining = static_cast<int>(received);
  for (auto* message = reinterpret_cast<nlmsghdr*>(buffer.data()); NLMSG_OK(message, remaining);
       message = NLMSG_NEXT(message, remaining)) {
    if (message->nlmsg_seq != seq) continue;
    const uint8_t* start = reinterpret_cast<const uint8_t*>(message);
    replies->push_back(Reply{std::vector<uint8_t>(start, start + message->nlmsg_len)});
  }
  return Ok();
}

Status Socket::Ack(Message& message, const std::string& object) {
  message.header()->nlmsg_flags |= NLM_F_ACK;
  std::string syscall = SyscallName(message.type());
  Status status = Send(message, object);
  if (!status.ok()) return status;
  for (;;) {
    std::vector<Reply> replies;
    status = Receive(message.header()->nlmsg_seq, syscall, object, &replies);
    if (!status.ok()) return status;
    for (const Reply& reply : replies) {
      if (reply.header()->nlmsg_type == NLMSG_ERROR) return WithNetns(ErrorOfAck(reply, syscall, object));
    }
  }
}

Status Socket::Get(Message& message, const std::string& object, Reply* result) {
  std::string syscall = SyscallName(message.type());
  Status status = Send(message, object);
  if (!status.ok()) return status;
  for (;;) {
    std::vector<Reply> replies;
    status = Receive(message.header()->nlmsg_seq, syscall, object, &replies);
    if (!status.ok()) return status;
    for (Reply& reply : replies) {
      if (reply.header()->nlmsg_type == NLMSG_ERROR) {
        status = ErrorOfAck(reply, syscall, object);
        if (!status.ok()) return WithNetns(status);
        continue;
      }
      *result = std::move(reply);
      return Ok();
    }
  }
}

Status Socket::DumpOnce(Message& message, std::vector<Reply>* replies, bool* interrupted) {
  std::string syscall = SyscallName(message.type());
  Status status = Send(message, "");
  if (!status.ok()) return status;
  for (;;) {
    std::vector<Reply> batch;
    status = Receive(message.header()->nlmsg_seq, syscall, "", &batch);
    if (!status.ok()) return status;
    for (Reply& reply : batch) {
      const nlmsghdr* header = reply.header();
      if (header->nlmsg_flags & NLM_F_DUMP_INTR) *interrupted = true;
      if (header->nlmsg_type == NLMSG_ERROR) return WithNetns(ErrorOfAck(reply, syscall, ""));
      if (header->nlmsg_type == NLMSG_DONE) {
        // NLMSG_DONE carries the dump's final status as an int (netlink_dump_done).
        const int* error = reply.Body<int>();
        if (error != nullptr && *error < 0) return WithNetns(Fail(-*error, syscall, "", "dump failed"));
        return Ok();
      }
      replies->push_back(std::move(reply));
    }
  }
}

Status Socket::Dump(Message& message, std::vector<Reply>* replies) {
  message.header()->nlmsg_flags |= NLM_F_DUMP;
  for (int attempt = 0; attempt < kDumpAttempts; attempt++) {
    replies->clear();
    bool interrupted = false;
    Status status = DumpOnce(message, replies, &interrupted);
    if (!status.ok() || !interrupted) return status;
  }
  return WithNetns(Fail(EINTR, SyscallName(message.type()), "",
                        "dump kept being interrupted by concurrent changes"));
}

}  // namespace d2p::netlink
