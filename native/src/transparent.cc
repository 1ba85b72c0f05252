// Transparent sockets for the node's DNS proxy: what Node's dgram and net
// cannot do.
//
// The datapath hands a pod's DNS datagram to the proxy's UDP socket with
// bpf_sk_assign; the datagram keeps its original destination (the pod's
// resolver), which only IP_RECVORIGDSTADDR / IPV6_RECVORIGDSTADDR report.
// The answer must come from that resolver's address and port, which is not
// an address of this host: sending from it needs a socket with
// IP_TRANSPARENT bound to it. Upstream legs carry SO_MARK (the client's
// identity, read by the destination's datapath). A TCP listener needs
// IP_TRANSPARENT so its SYN-ACK (sourced from the original destination) is
// routed; Node takes the listening fd over (net.Server.listen({ fd })).
//
//   UdpSocket(opts, onMessages)  datagrams in batches, read on the event
//                                loop when libuv reports the fd readable
//                                (uv_poll; the loop is never blocked)
//   sendFrom(buf, src, dst)      one datagram from a foreign address
//   tcpListen(opts) → fd         a transparent listening socket
//   tcpConnect(opts) → Promise<fd>  a marked, connected TCP socket
//
// Failures are Errors with errno/code/syscall (errors.h), thrown before
// anything is sent.
#include "transparent.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"

#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IP_RECVORIGDSTADDR
#define IP_RECVORIGDSTADDR 20
#endif
#ifndef IP_ORIGDSTADDR
#define IP_ORIGDSTADDR IP_RECVORIGDSTADDR
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif
#ifndef IPV6_RECVORIGDSTADDR
#define IPV6_RECVORIGDSTADDR 74
#endif
#ifndef IPV6_ORIGDSTADDR
#define IPV6_ORIGDSTADDR IPV6_RECVORIGDSTADDR
#endif

namespace meshd {
namespace {

constexpr size_t kMaxDatagram = 65536;
constexpr int kBatch = 64;

[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string& what) { Throw(env, Failure{err, what, ""}); }

// An address and port from JavaScript, e.g. ("10.0.0.2", 53); family from the text.
struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family() const { return ss.ss_family; }
};

bool ParseAddr(const std::string& ip, uint32_t port, SockAddr* out) {
  if (port > 65535) return false;
  std::memset(&out->ss, 0, sizeof(out->ss));
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out->ss);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out->ss);
  if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

SockAddr AddrField(const Napi::Object& o, const char* addrKey, const char* portKey, const char* what) {
  Napi::Env env = o.Env();
  Napi::Value a = o.Get(addrKey);
  Napi::Value p = o.Get(portKey);
  SockAddr out;
  if (!a.IsString() || !p.IsNumber() || !ParseAddr(a.As<Napi::String>().Utf8Value(), p.As<Napi::Number>().Uint32Value(), &out)) {
    throw Napi::TypeError::New(env, std::string(what) + ": " + addrKey + "/" + portKey + " must be an IP address and a port");
  }
  return out;
}

// Writes the address text and port of a sockaddr into a JS object's fields.
void SetAddr(Napi::Env env, Napi::Object o, const sockaddr* sa, const char* addrKey, const char* portKey) {
  char text[INET6_ADDRSTRLEN] = "";
  uint16_t port = 0;
  if (sa->sa_family == AF_INET) {
    auto* v4 = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
    port = ntohs(v4->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    auto* v6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
    port = ntohs(v6->sin6_port);
  }
  o.Set(addrKey, Napi::String::New(env, text));
  o.Set(portKey, Napi::Number::New(env, port));
}

bool BoolField(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

uint32_t U32Field(const Napi::Object& o, const char* key, uint32_t dflt) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : dflt;
}

// setsockopt that records what failed.
bool SetOpt(int fd, int level, int name, int value, std::string* what, const char* label) {
  if (setsockopt(fd, level, name, &value, sizeof(value)) == 0) return true;
  *what = std::string("setsockopt(") + label + ")";
  return false;
}

bool SetTransparent(int fd, int family, std::string* what) {
  return family == AF_INET6 ? SetOpt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, what, "IPV6_TRANSPARENT")
                            : SetOpt(fd, SOL_IP, IP_TRANSPARENT, 1, what, "IP_TRANSPARENT");
}

// A non-blocking socket with the common options, bound when `bind` is set. -1 with errno and *what on failure.
int MakeSocket(int family, int type, bool transparent, uint32_t mark, bool reuseAddr, const SockAddr* bind_to, std::string* what) {
  int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *what = "socket";
    return -1;
  }
  bool ok = (!reuseAddr || SetOpt(fd, SOL_SOCKET, SO_REUSEADDR, 1, what, "SO_REUSEADDR")) &&
            (!transparent || SetTransparent(fd, family, what)) && (mark == 0 || SetOpt(fd, SOL_SOCKET, SO_MARK, static_cast<int>(mark), what, "SO_MARK")) &&
            (family != AF_INET6 || SetOpt(fd, SOL_IPV6, IPV6_V6ONLY, 1, what, "IPV6_V6ONLY"));
  if (ok && bind_to && bind(fd, reinterpret_cast<const sockaddr*>(&bind_to->ss), bind_to->len) != 0) {
    *what = "bind";
    ok = false;
  }
  if (!ok) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

uv_loop_t* LoopOf(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) throw Napi::Error::New(env, "no libuv loop");
  return loop;
}

// ---- UdpSocket -----------------------------------------------------------------------------------

class UdpSocket;

// The socket's libuv poll handle and the environment cleanup hook that outlives it. A worker thread's
// environment can end with the socket open (terminate(), a crash) and unloads this addon once its cleanup
// hooks are done, before its loop runs the close callbacks still pending: the handle's close callback is
// this addon's code, so the environment must wait for it (an async cleanup hook, removed by that callback).
struct PollBox {
  uv_poll_t poll;  // first: the close callback gets &poll
  napi_async_cleanup_hook_handle hook = nullptr;
  UdpSocket* owner = nullptr;
  bool closing = false;
};

class UdpSocket : public Napi::ObjectWrap<UdpSocket> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "UdpSocket",
                       {
                           InstanceMethod<&UdpSocket::Send>("send"),
                           InstanceMethod<&UdpSocket::Address>("address"),
                           InstanceMethod<&UdpSocket::ReceiveBuffer>("receiveBuffer"),
                           InstanceMethod<&UdpSocket::Drops>("drops"),
                           InstanceMethod<&UdpSocket::Close>("close"),
                           InstanceMethod<&UdpSocket::Ref>("ref"),
                           InstanceMethod<&UdpSocket::Unref>("unref"),
                       });
  }

  // new UdpSocket({ address, port, transparent?, recvOrigDst?, mark?, reuseAddr?, recvBuffer? }, onMessages)
  explicit UdpSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpSocket>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) {
      throw Napi::TypeError::New(env, "UdpSocket(opts: {address, port, transparent?, recvOrigDst?, mark?, reuseAddr?, recvBuffer?}, onMessages)");
    }
    Napi::Object o = info[0].As<Napi::Object>();
    SockAddr local = AddrField(o, "address", "port", "UdpSocket");
    family_ = local.family();
    std::string what;
    fd_ = MakeSocket(family_, SOCK_DGRAM, BoolField(o, "transparent"), U32Field(o, "mark", 0), BoolField(o, "reuseAddr"), &local, &what);
    if (fd_ < 0) ThrowErrno(env, errno, "UdpSocket " + what);
    if (BoolField(o, "recvOrigDst")) {
      bool ok = family_ == AF_INET6 ? SetOpt(fd_, SOL_IPV6, IPV6_RECVORIGDSTADDR, 1, &what, "IPV6_RECVORIGDSTADDR")
                                    : SetOpt(fd_, SOL_IP, IP_RECVORIGDSTADDR, 1, &what, "IP_RECVORIGDSTADDR");
      if (!ok) {
        int err = errno;
        close(fd_);
        ThrowErrno(env, err, "UdpSocket " + what);
      }
    }
    // A burst the event loop cannot read at once (a GC pause, a slow callback) waits in the receive
    // buffer; the default (net.core.rmem_default, ~208 KiB) holds ~200 small datagrams, 20 ms at 10,000
    // queries per second. SO_RCVBUFFORCE (CAP_NET_ADMIN) is not capped by net.core.rmem_max.
    uint32_t rcvbuf = U32Field(o, "recvBuffer", 0);
    if (rcvbuf > 0 && setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0 &&
        !SetOpt(fd_, SOL_SOCKET, SO_RCVBUF, static_cast<int>(rcvbuf), &what, "SO_RCVBUF")) {
      int err = errno;
      close(fd_);
      ThrowErrno(env, err, "UdpSocket " + what);
    }
    auto* box = new PollBox;
    box->poll.data = this;
    int r = uv_poll_init(LoopOf(env), &box->poll, fd_);
    if (r != 0) {
      delete box;
      close(fd_);
      ThrowErrno(env, -r, "UdpSocket uv_poll");
    }
    box_ = box;
    box->owner = this;
    poll_ = &box->poll;
    r = uv_poll_start(poll_, UV_READABLE, &UdpSocket::OnPoll);
    if (r == 0 && napi_add_async_cleanup_hook(env, &UdpSocket::OnEnvCleanup, box, &box->hook) != napi_ok) r = -ENOMEM;
    if (r != 0) {
      DoClose();
      ThrowErrno(env, -r, "UdpSocket uv_poll");
    }
    cb_ = Napi::Persistent(info[1].As<Napi::Function>());
    ctx_ = std::make_unique<Napi::AsyncContext>(env, "meshd:udp");
    self_ = Napi::Persistent(info.This().As<Napi::Object>());  // alive until close()
    buf_.resize(kMaxDatagram);
  }

  ~UdpSocket() override { DoClose(); }

 private:
  static void OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
    auto* box = static_cast<PollBox*>(arg);
    if (box->owner) box->owner->DoClose();  // else its close is under way; its callback ends the hook
  }

  static void OnHandleClosed(uv_handle_t* h) {
    auto* box = reinterpret_cast<PollBox*>(h);
    napi_async_cleanup_hook_handle hook = box->hook;
    delete box;
    if (hook) napi_remove_async_cleanup_hook(hook);
  }

  static void OnPoll(uv_poll_t* h, int status, int) {
    auto* self = static_cast<UdpSocket*>(h->data);
    if (!self || status != 0) return;
    try {
      self->Drain();
    } catch (const Napi::Error&) {
      // A worker thread being terminated still runs its loop's callbacks but can no longer run
      // JavaScript: the wrappers' calls fail (and their errors, built under
      // NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS, cannot be thrown into it). Nothing more to read.
      self->DoClose();
    }
  }

  // Event loop: reads up to kBatch datagrams and hands them to JavaScript in one call.
  void Drain() {
    Napi::HandleScope scope(env_);
    Napi::Array out = Napi::Array::New(env_);
    uint32_t n = 0;
    for (int i = 0; i < kBatch && fd_ >= 0; i++) {
      sockaddr_storage src{};
      char control[256];
      iovec iov{buf_.data(), buf_.size()};
      msghdr msg{};
      msg.msg_name = &src;
      msg.msg_namelen = sizeof(src);
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      ssize_t got = recvmsg(fd_, &msg, MSG_DONTWAIT);
      if (got < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        continue;  // ICMP errors queued on the socket (ECONNREFUSED…): nothing to deliver
      }
      Napi::Object m = Napi::Object::New(env_);
      m.Set("data", Napi::Buffer<uint8_t>::Copy(env_, buf_.data(), static_cast<size_t>(got)));
      m.Set("truncated", Napi::Boolean::New(env_, (msg.msg_flags & MSG_TRUNC) != 0));
      SetAddr(env_, m, reinterpret_cast<sockaddr*>(&src), "srcAddress", "srcPort");
      m.Set("dstAddress", env_.Null());
      m.Set("dstPort", env_.Null());
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        bool v4 = c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR;
        bool v6 = c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR;
        if (v4 || v6) SetAddr(env_, m, reinterpret_cast<sockaddr*>(CMSG_DATA(c)), "dstAddress", "dstPort");
      }
      out.Set(n++, m);
    }
    if (n == 0) return;
    try {
      cb_.MakeCallback(self_.Value(), {out}, *ctx_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env_, e.Value());
    }
  }

  // send(buf, address, port) → bytes sent; throws with errno (EAGAIN when the socket buffer is full).
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto buf = BufArg(info, 0, "UdpSocket.send");
    SockAddr dst;
    if (info.Length() < 3 || !info[1].IsString() || !info[2].IsNumber() ||
        !ParseAddr(info[1].As<Napi::String>().Utf8Value(), info[2].As<Napi::Number>().Uint32Value(), &dst)) {
      throw Napi::TypeError::New(env, "UdpSocket.send(buf, address, port)");
    }
    if (fd_ < 0) ThrowErrno(env, EBADF, "UdpSocket.send on a closed socket");
    ssize_t r = sendto(fd_, buf.Data(), buf.Length(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&dst.ss), dst.len);
    if (r < 0) ThrowErrno(env, errno, "sendto");
    return Napi::Number::New(env, static_cast<double>(r));
  }

  Napi::Value Address(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) ThrowErrno(env, EBADF, "UdpSocket.address on a closed socket");
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) ThrowErrno(env, errno, "getsockname");
    Napi::Object o = Napi::Object::New(env);
    SetAddr(env, o, reinterpret_cast<sockaddr*>(&ss), "address", "port");
    return o;
  }

  // receiveBuffer() → the socket's receive buffer in bytes as the kernel counts it (twice what was set).
  Napi::Value ReceiveBuffer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) ThrowErrno(env, EBADF, "UdpSocket.receiveBuffer on a closed socket");
    int v = 0;
    socklen_t len = sizeof(v);
    if (getsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &v, &len) != 0) ThrowErrno(env, errno, "getsockopt(SO_RCVBUF)");
    return Napi::Number::New(env, v);
  }

  // drops() → datagrams the kernel dropped on this socket so far (receive buffer full): sk_drops, as
  // SO_MEMINFO reports it (what `ss -m` shows as d<N>). 0 on a closed socket.
  Napi::Value Drops(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) return Napi::Number::New(env, 0);
    uint32_t mem[SK_MEMINFO_VARS] = {};
    socklen_t len = sizeof(mem);
    if (getsockopt(fd_, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0) ThrowErrno(env, errno, "getsockopt(SO_MEMINFO)");
    return Napi::Number::New(env, len > SK_MEMINFO_DROPS * sizeof(uint32_t) ? mem[SK_MEMINFO_DROPS] : 0);
  }

  void DoClose() {
    if (box_ && !box_->closing) {
      box_->closing = true;
      box_->owner = nullptr;
      box_->poll.data = nullptr;
      uv_poll_stop(&box_->poll);
      uv_close(reinterpret_cast<uv_handle_t*>(&box_->poll), &UdpSocket::OnHandleClosed);
    }
    box_ = nullptr;
    poll_ = nullptr;
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    DoClose();
    if (!self_.IsEmpty()) self_.Reset();
    if (!cb_.IsEmpty()) cb_.Reset();
    return info.Env().Undefined();
  }
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (poll_) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }
  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (poll_) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }

  Napi::Env env_;
  int fd_ = -1;
  int family_ = AF_INET;
  uv_poll_t* poll_ = nullptr;
  PollBox* box_ = nullptr;
  Napi::FunctionReference cb_;
  std::unique_ptr<Napi::AsyncContext> ctx_;
  Napi::ObjectReference self_;
  std::vector<uint8_t> buf_;
};

// ---- one-shot send from a foreign address ------------------------------------------------------------

// sendFrom(buf, { srcAddress, srcPort, dstAddress, dstPort, mark? }) → bytes sent
Napi::Value SendFrom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto buf = BufArg(info, 0, "sendFrom");
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "sendFrom(buf, {srcAddress, srcPort, dstAddress, dstPort, mark?})");
  Napi::Object o = info[1].As<Napi::Object>();
  SockAddr src = AddrField(o, "srcAddress", "srcPort", "sendFrom");
  SockAddr dst = AddrField(o, "dstAddress", "dstPort", "sendFrom");
  if (src.family() != dst.family()) throw Napi::TypeError::New(env, "sendFrom: source and destination must be of one address family");
  std::string what;
  // SO_REUSEADDR: the same foreign address and port may be in use by another reply right now.
  int fd = MakeSocket(src.family(), SOCK_DGRAM, true, U32Field(o, "mark", 0), true, &src, &what);
  if (fd < 0) ThrowErrno(env, errno, "sendFrom " + what);
  ssize_t r = sendto(fd, buf.Data(), buf.Length(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&dst.ss), dst.len);
  int err = errno;
  close(fd);
  if (r < 0) ThrowErrno(env, err, "sendFrom sendto");
  return Napi::Number::New(env, static_cast<double>(r));
}

// ---- TCP -----------------------------------------------------------------------------------------------

// tcpListen({ address, port, transparent?, backlog? }) → fd (the caller hands it to net.Server.listen({ fd }))
Napi::Value TcpListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "tcpListen({address, port, transparent?, backlog?})");
  Napi::Object o = info[0].As<Napi::Object>();
  SockAddr local = AddrField(o, "address", "port", "tcpListen");
  std::string what;
  int fd = MakeSocket(local.family(), SOCK_STREAM, BoolField(o, "transparent"), 0, true, &local, &what);
  if (fd < 0) ThrowErrno(env, errno, "tcpListen " + what);
  if (listen(fd, static_cast<int>(U32Field(o, "backlog", 511))) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "tcpListen listen");
  }
  return Napi::Number::New(env, fd);
}

struct PendingConnect {
  uv_poll_t poll;
  int fd;
  Napi::Env env;
  Napi::Promise::Deferred deferred;
};

// tcpConnect({ address, port, mark?, srcAddress?, srcPort? }) → Promise<fd> once connected (the caller wraps it in
// net.Socket({ fd })). With srcAddress the socket is transparent and bound to it (and to srcPort, default 0: any).
Napi::Value TcpConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "tcpConnect({address, port, mark?, srcAddress?, srcPort?})");
  Napi::Object o = info[0].As<Napi::Object>();
  SockAddr dst = AddrField(o, "address", "port", "tcpConnect");
  SockAddr src;
  bool fromSrc = o.Get("srcAddress").IsString();
  if (fromSrc) {
    if (!ParseAddr(o.Get("srcAddress").As<Napi::String>().Utf8Value(), U32Field(o, "srcPort", 0), &src) || src.family() != dst.family()) {
      throw Napi::TypeError::New(env, "tcpConnect: srcAddress/srcPort must be an IP address of the destination's family and a port");
    }
  }
  std::string what;
  int fd = MakeSocket(dst.family(), SOCK_STREAM, fromSrc, U32Field(o, "mark", 0), false, fromSrc ? &src : nullptr, &what);
  if (fd < 0) ThrowErrno(env, errno, "tcpConnect " + what);
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  if (connect(fd, reinterpret_cast<sockaddr*>(&dst.ss), dst.len) == 0) {
    deferred.Resolve(Napi::Number::New(env, fd));
    return deferred.Promise();
  }
  if (errno != EINPROGRESS) {
    int err = errno;
    close(fd);
    deferred.Reject(MakeError(env, Failure{err, "tcpConnect connect", ""}).Value());
    return deferred.Promise();
  }
  auto* p = new PendingConnect{uv_poll_t{}, fd, env, deferred};
  p->poll.data = p;
  int r = uv_poll_init(LoopOf(env), &p->poll, fd);
  if (r != 0) {
    close(fd);
    delete p;
    deferred.Reject(MakeError(env, Failure{-r, "tcpConnect uv_poll", ""}).Value());
    return deferred.Promise();
  }
  {
    r = uv_poll_start(&p->poll, UV_WRITABLE, [](uv_poll_t* h, int status, int) {
      auto* pc = static_cast<PendingConnect*>(h->data);
      uv_poll_stop(h);
      int err = status < 0 ? -status : 0;
      socklen_t len = sizeof(err);
      if (err == 0 && getsockopt(pc->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      Napi::HandleScope scope(pc->env);
      if (err == 0) {
        pc->deferred.Resolve(Napi::Number::New(pc->env, pc->fd));
      } else {
        close(pc->fd);
        pc->deferred.Reject(MakeError(pc->env, Failure{err, "tcpConnect connect", ""}).Value());
      }
      uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* hh) { delete static_cast<PendingConnect*>(hh->data); });
    });
  }
  if (r != 0) {
    close(fd);
    deferred.Reject(MakeError(env, Failure{-r, "tcpConnect uv_poll", ""}).Value());
    uv_close(reinterpret_cast<uv_handle_t*>(&p->poll), [](uv_handle_t* hh) { delete static_cast<PendingConnect*>(hh->data); });
  }
  return deferred.Promise();
}

}  // namespace

void InitTransparent(Napi::Env env, Napi::Object exports) {
  exports.Set("UdpSocket", UdpSocket::Init(env));
  Export<SendFrom>(env, exports, "sendFrom");
  Export<TcpListen>(env, exports, "tcpListen");
  Export<TcpConnect>(env, exports, "tcpConnect");
}

}  // namespace meshd
