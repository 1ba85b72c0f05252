// The host's addresses over rtnetlink (Node has no netlink of its own).
//
//   addrDump(): Addr[]                    one RTM_GETADDR dump, on the calling thread
//   addrChange(op, ifindex, family, address, prefixlen, scope, flags)
//                                         one RTM_NEWADDR ('replace': create or replace)
//                                         or RTM_DELADDR ('del'), acknowledged, on the calling thread
//   new AddressWatcher(onEvents)          RTM_NEWADDR / RTM_DELADDR as they happen
//
// An Addr is { ifindex, family (4|6), address (text), prefixlen, scope, flags },
// an event the same plus { type: 'new' | 'del' }; a `{ type: 'overrun' }` event
// says the kernel dropped notifications (ENOBUFS on the socket): the listener
// must re-read the whole set with addrDump().
//
// The watcher is a JsEventSource (event-source.h), as RingBufferReader: its
// worker thread waits on the netlink socket (bound to RTMGRP_IPV4_IFADDR |
// RTMGRP_IPV6_IFADDR), parses what it reads into plain structs and hands each
// batch to the JS thread.
#include "netlink.h"

#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "event-source.h"

namespace meshd {
namespace {

struct AddrEvent {
  const char* type;  // "new", "del", "overrun"
  uint32_t ifindex = 0;
  int family = 0;  // 4 or 6
  std::string address;
  uint32_t prefixlen = 0;
  uint32_t scope = 0;
  uint32_t flags = 0;
};

using Batch = std::vector<AddrEvent>;

// Parses one RTM_NEWADDR/RTM_DELADDR message; false for anything else (other families, no address).
bool ParseAddr(const struct nlmsghdr* h, AddrEvent* out) {
  if (h->nlmsg_type != RTM_NEWADDR && h->nlmsg_type != RTM_DELADDR) return false;
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifaddrmsg))) return false;
  const auto* ifa = static_cast<const struct ifaddrmsg*>(NLMSG_DATA(h));
  if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6) return false;
  const size_t alen = ifa->ifa_family == AF_INET ? 4 : 16;
  const void* local = nullptr;
  const void* addr = nullptr;
  uint32_t flags = ifa->ifa_flags;
  int len = static_cast<int>(IFA_PAYLOAD(h));
  for (const struct rtattr* rta = IFA_RTA(ifa); RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
    const size_t plen = RTA_PAYLOAD(rta);
    if (rta->rta_type == IFA_LOCAL && plen >= alen) local = RTA_DATA(rta);
    if (rta->rta_type == IFA_ADDRESS && plen >= alen) addr = RTA_DATA(rta);
    // IFA_FLAGS carries the full 32 bits (ifa_flags only the low 8).
    if (rta->rta_type == IFA_FLAGS && plen >= sizeof(uint32_t)) std::memcpy(&flags, RTA_DATA(rta), sizeof(uint32_t));
  }
  // On a point-to-point link IFA_ADDRESS is the peer and IFA_LOCAL our own address; otherwise they are equal.
  const void* own = local != nullptr ? local : addr;
  if (own == nullptr) return false;
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(ifa->ifa_family, own, text, sizeof(text)) == nullptr) return false;
  out->type = h->nlmsg_type == RTM_NEWADDR ? "new" : "del";
  out->ifindex = ifa->ifa_index;
  out->family = ifa->ifa_family == AF_INET ? 4 : 6;
  out->address = text;
  out->prefixlen = ifa->ifa_prefixlen;
  out->scope = ifa->ifa_scope;
  out->flags = flags;
  return true;
}

Napi::Object ToJsEvent(Napi::Env env, const AddrEvent& e, bool with_type) {
  Napi::Object o = Napi::Object::New(env);
  if (with_type) o.Set("type", e.type);
  if (std::strcmp(e.type, "overrun") == 0) return o;
  o.Set("ifindex", Napi::Number::New(env, e.ifindex));
  o.Set("family", Napi::Number::New(env, e.family));
  o.Set("address", Napi::String::New(env, e.address));
  o.Set("prefixlen", Napi::Number::New(env, e.prefixlen));
  o.Set("scope", Napi::Number::New(env, e.scope));
  o.Set("flags", Napi::Number::New(env, e.flags));
  return o;
}

// A NETLINK_ROUTE socket; groups = 0 for a request socket.
int OpenRoute(uint32_t groups, int* err) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  struct sockaddr_nl sa = {};
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = groups;
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa)) < 0) {
    *err = errno;
    close(fd);
    return -1;
  }
  return fd;
}

Napi::Value AddrDump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int err = 0;
  int fd = OpenRoute(0, &err);
  if (fd < 0) Throw(env, Failure{err, "socket(NETLINK_ROUTE)", ""});
  struct {
    struct nlmsghdr h;
    struct ifaddrmsg m;
  } req = {};
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
  req.h.nlmsg_type = RTM_GETADDR;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = 1;
  req.m.ifa_family = AF_UNSPEC;
  if (send(fd, &req, req.h.nlmsg_len, 0) < 0) {
    err = errno;
    close(fd);
    Throw(env, Failure{err, "send(RTM_GETADDR)", ""});
  }
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  std::vector<char> buf(64 * 1024);
  for (bool done = false; !done;) {
    ssize_t got = recv(fd, buf.data(), buf.size(), 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      err = errno;
      close(fd);
      Throw(env, Failure{err, "recv(RTM_GETADDR dump)", ""});
    }
    int len = static_cast<int>(got);
    for (auto* h = reinterpret_cast<struct nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != req.h.nlmsg_seq) continue;
      if (h->nlmsg_type == NLMSG_DONE) {
        done = true;
        break;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const struct nlmsgerr*>(NLMSG_DATA(h));
        close(fd);
        Throw(env, Failure{-e->error, "RTM_GETADDR dump", ""});
      }
      AddrEvent a;
      if (ParseAddr(h, &a)) out.Set(n++, ToJsEvent(env, a, false));
    }
  }
  close(fd);
  return out;
}

// addrChange('replace' | 'del', ifindex, family (4|6), address (text), prefixlen, scope, flags): one
// request, waited for until the kernel acknowledges it (NLM_F_ACK); throws with the kernel's errno.
Napi::Value AddrChange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsString() || !info[4].IsNumber() ||
      !info[5].IsNumber() || !info[6].IsNumber()) {
    throw Napi::TypeError::New(env, "addrChange(op: 'replace' | 'del', ifindex, family: 4 | 6, address, prefixlen, scope, flags)");
  }
  const std::string op = info[0].As<Napi::String>().Utf8Value();
  if (op != "replace" && op != "del") throw Napi::TypeError::New(env, "addrChange: op must be 'replace' or 'del'");
  const int family = info[2].As<Napi::Number>().Int32Value() == 6 ? AF_INET6 : AF_INET;
  const std::string text = info[3].As<Napi::String>().Utf8Value();
  unsigned char addr[16];
  if (inet_pton(family, text.c_str(), addr) != 1) throw Napi::TypeError::New(env, "addrChange: not an address of the family: " + text);
  const size_t alen = family == AF_INET ? 4 : 16;
  struct {
    struct nlmsghdr h;
    struct ifaddrmsg m;
    char attrs[3 * RTA_SPACE(16)];
  } req = {};
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
  req.h.nlmsg_type = op == "del" ? RTM_DELADDR : RTM_NEWADDR;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (op == "del" ? 0 : NLM_F_CREATE | NLM_F_REPLACE);
  req.h.nlmsg_seq = 1;
  req.m.ifa_family = static_cast<unsigned char>(family);
  req.m.ifa_prefixlen = static_cast<unsigned char>(info[4].As<Napi::Number>().Uint32Value());
  req.m.ifa_scope = static_cast<unsigned char>(info[5].As<Napi::Number>().Uint32Value());
  req.m.ifa_index = info[1].As<Napi::Number>().Uint32Value();
  const uint32_t flags = info[6].As<Napi::Number>().Uint32Value();
  req.m.ifa_flags = static_cast<unsigned char>(flags & 0xff);
  auto put = [&req](unsigned short type, const void* data, size_t len) {
    auto* rta = reinterpret_cast<struct rtattr*>(reinterpret_cast<char*>(&req) + NLMSG_ALIGN(req.h.nlmsg_len));
    rta->rta_type = type;
    rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(len));
    std::memcpy(RTA_DATA(rta), data, len);
    req.h.nlmsg_len = NLMSG_ALIGN(req.h.nlmsg_len) + RTA_ALIGN(rta->rta_len);
  };
  // As iproute2 does for an address without a peer: IFA_LOCAL and IFA_ADDRESS both the address.
  put(IFA_LOCAL, addr, alen);
  put(IFA_ADDRESS, addr, alen);
  if (op != "del") put(IFA_FLAGS, &flags, sizeof(flags));
  int err = 0;
  int fd = OpenRoute(0, &err);
  if (fd < 0) Throw(env, Failure{err, "socket(NETLINK_ROUTE)", ""});
  const std::string what = (op == "del" ? "RTM_DELADDR " : "RTM_NEWADDR ") + text;
  if (send(fd, &req, req.h.nlmsg_len, 0) < 0) {
    err = errno;
    close(fd);
    Throw(env, Failure{err, "send(" + what + ")", ""});
  }
  std::vector<char> buf(8 * 1024);
  for (;;) {
    ssize_t got = recv(fd, buf.data(), buf.size(), 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      err = errno;
      close(fd);
      Throw(env, Failure{err, "recv(" + what + ")", ""});
    }
    int len = static_cast<int>(got);
    for (auto* h = reinterpret_cast<struct nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != req.h.nlmsg_seq || h->nlmsg_type != NLMSG_ERROR) continue;
      // The acknowledgement is an NLMSG_ERROR with error 0.
      const int e = -static_cast<const struct nlmsgerr*>(NLMSG_DATA(h))->error;
      close(fd);
      if (e != 0) Throw(env, Failure{e, what, ""});
      return env.Undefined();
    }
  }
}

class AddressWatcher : public JsEventSource<AddressWatcher, Batch> {
 public:
  static Napi::Function Init(Napi::Env env) { return DefineWith(env, "AddressWatcher", {}); }

  // new AddressWatcher(onEvents)
  explicit AddressWatcher(const Napi::CallbackInfo& info) : JsEventSource(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) {
      throw Napi::TypeError::New(env, "AddressWatcher(onEvents: (events: AddrEvent[]) => void)");
    }
    int err = 0;
    sock_ = OpenRoute(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR, &err);
    if (sock_ < 0) Throw(env, Failure{err, "socket(NETLINK_ROUTE, RTMGRP_IPV4_IFADDR|RTMGRP_IPV6_IFADDR)", ""});
    Start(info, info[0].As<Napi::Function>(), "meshd:netlink", sock_);
  }

  ~AddressWatcher() override {
    Shutdown();
    OnClosed();
  }

  // Worker thread: everything queued now, as one batch.
  void Drain() {
    auto batch = std::make_unique<Batch>();
    for (;;) {
      ssize_t got = recv(sock_, buf_.data(), buf_.size(), MSG_DONTWAIT);
      if (got < 0) {
        if (errno == EINTR) continue;
        // ENOBUFS: the socket's queue overflowed and notifications were lost.
        if (errno == ENOBUFS) batch->push_back(AddrEvent{"overrun"});
        break;
      }
      int len = static_cast<int>(got);
      for (auto* h = reinterpret_cast<struct nlmsghdr*>(buf_.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        AddrEvent a;
        if (ParseAddr(h, &a)) batch->push_back(std::move(a));
      }
    }
    // A batch that cannot be queued is lost like an overflow; the JS side re-reads on the next one.
    if (!batch->empty()) Deliver(std::move(batch));
  }

  Napi::Value ToJs(Napi::Env env, const Batch& batch) {
    Napi::Array arr = Napi::Array::New(env, batch.size());
    for (size_t i = 0; i < batch.size(); i++) arr.Set(static_cast<uint32_t>(i), ToJsEvent(env, batch[i], true));
    return arr;
  }

  void OnClosed() {
    if (sock_ >= 0) close(sock_);
    sock_ = -1;
  }

 private:
  int sock_ = -1;
  std::vector<char> buf_ = std::vector<char>(64 * 1024);  // worker thread only
};

}  // namespace

void InitNetlink(Napi::Env env, Napi::Object exports) {
  exports.Set("addrDump", Napi::Function::New(env, AddrDump, "addrDump"));
  exports.Set("addrChange", Napi::Function::New(env, AddrChange, "addrChange"));
  exports.Set("AddressWatcher", AddressWatcher::Init(env));
}

}  // namespace meshd
