#include "ops.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"

namespace meshd {
namespace {

// libbpfVersion(): "major.minor"
Napi::Value LibbpfVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), libbpf_version_string());
}

// progTestRun(progFd, data, { repeat?, dataSizeOut?, ifindex? }) -> { retval, durationNs, dataOut }
// BPF_PROG_TEST_RUN runs the program in the kernel on a copy of `data`; a tc
// program sees the skb on device `ifindex` of this network namespace (the
// kernel's default, without it, is the loopback device, ifindex 1).
Napi::Value ProgTestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "progTestRun");
  Napi::Buffer<uint8_t> data = BufArg(info, 1, "progTestRun");
  uint32_t repeat = 1;
  size_t out_size = data.Length() + 256;
  struct __sk_buff ctx = {};
  bool with_ctx = false;
  if (info.Length() > 2 && info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    if (o.Get("repeat").IsNumber()) repeat = o.Get("repeat").As<Napi::Number>().Uint32Value();
    if (o.Get("dataSizeOut").IsNumber()) out_size = o.Get("dataSizeOut").As<Napi::Number>().Uint32Value();
    if (o.Get("ifindex").IsNumber()) {
      ctx.ifindex = o.Get("ifindex").As<Napi::Number>().Uint32Value();
      with_ctx = true;
    }
  }
  std::vector<uint8_t> out(out_size);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data.Data(), .data_out = out.data(),
              .data_size_in = static_cast<__u32>(data.Length()), .data_size_out = static_cast<__u32>(out.size()),
              .ctx_in = with_ctx ? &ctx : nullptr, .ctx_size_in = with_ctx ? static_cast<__u32>(sizeof(ctx)) : 0u,
              .repeat = static_cast<int>(repeat));
  int ret = bpf_prog_test_run_opts(fd, &opts);
  ThrowIfNeg(env, ret, "bpf_prog_test_run");
  Napi::Object r = Napi::Object::New(env);
  r.Set("retval", Napi::Number::New(env, opts.retval));
  r.Set("durationNs", Napi::Number::New(env, opts.duration));
  r.Set("dataOut", Napi::Buffer<uint8_t>::Copy(env, out.data(), opts.data_size_out));
  return r;
}

// objGet(path) -> fd of a pinned map, program or link (BPF_OBJ_GET).
Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "objGet(path: string)");
  std::string path = info[0].As<Napi::String>();
  int fd = bpf_obj_get(path.c_str());
  ThrowIfNeg(env, fd, "bpf_obj_get(" + path + ")");
  return Napi::Number::New(env, fd);
}

// objPin(fd, path): pins a map, program or link in bpffs (the parent
// directory must exist and be on bpffs). EEXIST if the path is taken.
Napi::Value ObjPin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "objPin");
  if (info.Length() < 2 || !info[1].IsString()) throw Napi::TypeError::New(env, "objPin(fd, path: string)");
  std::string path = info[1].As<Napi::String>();
  ThrowIfNeg(env, bpf_obj_pin(fd, path.c_str()), "bpf_obj_pin(" + path + ")");
  return env.Undefined();
}

// objUnpin(path) -> whether a pin was removed. Removing a pin drops only that
// reference: the object lives on while fds or links hold it.
Napi::Value ObjUnpin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "objUnpin(path: string)");
  std::string path = info[0].As<Napi::String>();
  if (unlink(path.c_str()) == 0) return Napi::Boolean::New(env, true);
  if (errno == ENOENT) return Napi::Boolean::New(env, false);
  Throw(env, Failure{errno, "unlink(" + path + ")", ""});
}

// closeFd(fd): closes a descriptor returned by this addon. Closing a link fd
// detaches the program unless the link is pinned.
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "closeFd");
  if (fd < 0) return env.Undefined();
  if (close(fd) < 0 && errno != EINTR) Throw(env, Failure{errno, "close(" + std::to_string(fd) + ")", ""});
  return env.Undefined();
}

// progInfo(fd) -> { id, name, type, typeName, tag }
Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "progInfo");
  struct bpf_prog_info pi = {};
  __u32 len = sizeof(pi);
  ThrowIfNeg(env, bpf_obj_get_info_by_fd(fd, &pi, &len), "progInfo: bpf_obj_get_info_by_fd");
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", pi.id);
  o.Set("name", pi.name);
  o.Set("type", pi.type);
  o.Set("typeName", libbpf_bpf_prog_type_str(static_cast<enum bpf_prog_type>(pi.type)) ?: "unknown");
  char tag[2 * BPF_TAG_SIZE + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++) snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
  o.Set("tag", tag);
  return o;
}

// netnsCookie() -> bigint: the cookie of the network namespace this process
// is in (the host's, for the agent), as bpf_get_netns_cookie() returns it to
// programs. Read with SO_NETNS_COOKIE on a throwaway socket.
Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  constexpr int kSoNetnsCookie = 71;  // SO_NETNS_COOKIE (5.14), not in older libc headers
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) Throw(env, Failure{errno, "socket(AF_INET, SOCK_DGRAM)", ""});
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  int ret = getsockopt(s, SOL_SOCKET, kSoNetnsCookie, &cookie, &len);
  int err = errno;
  close(s);
  if (ret < 0) Throw(env, Failure{err, "getsockopt(SO_NETNS_COOKIE)", ""});
  return Napi::BigInt::New(env, cookie);
}

// ifNameToIndex(name) -> ifindex (ENODEV if absent)
Napi::Value IfNameToIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "ifNameToIndex(name: string)");
  std::string name = info[0].As<Napi::String>();
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) Throw(env, Failure{errno == 0 ? ENODEV : errno, "if_nametoindex(" + name + ")", ""});
  return Napi::Number::New(env, idx);
}

// numPossibleCpus(): what per-CPU map values are multiplied by.
Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  ThrowIfNeg(info.Env(), n, "libbpf_num_possible_cpus");
  return Napi::Number::New(info.Env(), n);
}

// pidfdGetfd(pid, fd) -> a duplicate, in this process, of descriptor `fd` of process `pid` (pidfd_open +
// pidfd_getfd, Linux 5.6; needs ptrace rights over the target). The caller closes it (closeFd).
Napi::Value PidfdGetfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "pidfdGetfd(pid: number, fd: number)");
  int pid = info[0].As<Napi::Number>().Int32Value();
  int target = info[1].As<Napi::Number>().Int32Value();
  if (pid <= 0 || target < 0) throw Napi::TypeError::New(env, "pidfdGetfd: pid > 0 and fd >= 0 required");
  int pidfd = static_cast<int>(syscall(__NR_pidfd_open, pid, 0));
  if (pidfd < 0) Throw(env, Failure{errno, "pidfd_open(" + std::to_string(pid) + ")", ""});
  int fd = static_cast<int>(syscall(__NR_pidfd_getfd, pidfd, target, 0));
  int err = errno;
  close(pidfd);
  if (fd < 0) Throw(env, Failure{err, "pidfd_getfd(" + std::to_string(pid) + ", " + std::to_string(target) + ")", ""});
  return Napi::Number::New(env, fd);
}

// reuseportAttach(sockFd, progFd): SO_ATTACH_REUSEPORT_EBPF — the SK_REUSEPORT program selects the socket
// of every new connection in the reuseport group `sockFd` belongs to (replacing the group's program).
Napi::Value ReuseportAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock = FdArg(info, 0, "reuseportAttach");
  int prog = FdArg(info, 1, "reuseportAttach");
  if (setsockopt(sock, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog, sizeof(prog)) != 0) {
    Throw(env, Failure{errno, "setsockopt(SO_ATTACH_REUSEPORT_EBPF)", ""});
  }
  return env.Undefined();
}

// socketInfo(fd) -> { listening, protocol, family, port }: what a descriptor taken from another process is.
Napi::Value SocketInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "socketInfo");
  int listening = 0, protocol = 0, domain = 0;
  socklen_t len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0) Throw(env, Failure{errno, "getsockopt(SO_ACCEPTCONN)", ""});
  len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) != 0) Throw(env, Failure{errno, "getsockopt(SO_PROTOCOL)", ""});
  len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) Throw(env, Failure{errno, "getsockopt(SO_DOMAIN)", ""});
  struct sockaddr_storage ss = {};
  socklen_t sl = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) != 0) Throw(env, Failure{errno, "getsockname", ""});
  int port = 0;
  if (ss.ss_family == AF_INET) port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) port = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  Napi::Object o = Napi::Object::New(env);
  o.Set("listening", Napi::Boolean::New(env, listening != 0));
  o.Set("protocol", Napi::Number::New(env, protocol));
  o.Set("family", Napi::Number::New(env, domain == AF_INET6 ? 6 : domain == AF_INET ? 4 : 0));
  o.Set("port", Napi::Number::New(env, port));
  return o;
}

}  // namespace

void InitOps(Napi::Env env, Napi::Object exports) {
  Export<LibbpfVersion>(env, exports, "libbpfVersion");
  Export<ProgTestRun>(env, exports, "progTestRun");
  Export<ObjGet>(env, exports, "objGet");
  Export<ObjPin>(env, exports, "objPin");
  Export<ObjUnpin>(env, exports, "objUnpin");
  Export<CloseFd>(env, exports, "closeFd");
  Export<ProgInfo>(env, exports, "progInfo");
  Export<NetnsCookie>(env, exports, "netnsCookie");
  Export<IfNameToIndex>(env, exports, "ifNameToIndex");
  Export<NumPossibleCpus>(env, exports, "numPossibleCpus");
  Export<PidfdGetfd>(env, exports, "pidfdGetfd");
  Export<ReuseportAttach>(env, exports, "reuseportAttach");
  Export<SocketInfo>(env, exports, "socketInfo");
}

}  // namespace meshd
