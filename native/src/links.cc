// Attaching programs. meshd prefers BPF links: a link is a kernel object that
// holds the attachment, can be pinned in bpffs (so the program stays attached
// after the agent exits and a restarted agent finds it again) and can have its
// program replaced atomically (bpf_link_update). The older attach APIs (tc
// clsact filters, bpf_prog_attach) are kept for kernels or hooks without links.
#include "links.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <unistd.h>
#include <cerrno>
#include <string>

#include "errors.h"

namespace meshd {
namespace {

int IntArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + ": argument " + std::to_string(i) + " must be a number");
  }
  return info[i].As<Napi::Number>().Int32Value();
}

std::string StrArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + ": argument " + std::to_string(i) + " must be a string");
  }
  return info[i].As<Napi::String>();
}

// linkCreate(progFd, targetFd, attachType, flags = 0) -> link fd
// The raw door: targetFd is a cgroup directory fd, an ifindex (tcx), a map fd
// (sockmap links) depending on attachType. libbpf 1.1 passes attach types it
// does not know (BPF_TCX_INGRESS = 46, BPF_TCX_EGRESS = 47) through as is.
Napi::Value LinkCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = IntArg(info, 0, "linkCreate");
  int target = IntArg(info, 1, "linkCreate");
  int type = IntArg(info, 2, "linkCreate");
  __u32 flags = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Uint32Value() : 0;
  LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = flags);
  BeginLogCapture();
  int fd = bpf_link_create(prog, target, static_cast<enum bpf_attach_type>(type), &opts);
  ThrowIfNeg(env, fd, "bpf_link_create(attach type " + std::to_string(type) + ")");
  TakeLog();
  return Napi::Number::New(env, fd);
}

// attachCgroup(progFd, cgroupPath, attachType) -> link fd
// Cgroup socket hooks (connect4/6, sendmsg4/6, recvmsg4/6, getpeername4/6,
// sock_ops) run for every socket of every process in the cgroup subtree. A
// link attachment is always "multi": several programs may sit on one hook.
Napi::Value AttachCgroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = IntArg(info, 0, "attachCgroup");
  std::string path = StrArg(info, 1, "attachCgroup");
  int type = IntArg(info, 2, "attachCgroup");
  int cg = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) Throw(env, Failure{errno, "open cgroup " + path, ""});
  int fd = bpf_link_create(prog, cg, static_cast<enum bpf_attach_type>(type), nullptr);
  int err = errno;
  close(cg);
  if (fd < 0) Throw(env, Failure{err, "bpf_link_create(cgroup " + path + ", attach type " + std::to_string(type) + ")", ""});
  return Napi::Number::New(env, fd);
}

constexpr int kTcxIngress = 46;  // BPF_TCX_INGRESS (kernel 6.6); not in 6.1 uapi
constexpr int kTcxEgress = 47;   // BPF_TCX_EGRESS

// attachTcx(progFd, ifindex, "ingress" | "egress") -> link fd
Napi::Value AttachTcx(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = IntArg(info, 0, "attachTcx");
  int ifindex = IntArg(info, 1, "attachTcx");
  std::string dir = StrArg(info, 2, "attachTcx");
  if (dir != "ingress" && dir != "egress") throw Napi::TypeError::New(env, "attachTcx: direction must be ingress or egress");
  int type = dir == "ingress" ? kTcxIngress : kTcxEgress;
  int fd = bpf_link_create(prog, ifindex, static_cast<enum bpf_attach_type>(type), nullptr);
  if (fd < 0) Throw(env, Failure{errno, "bpf_link_create(tcx " + dir + ", ifindex " + std::to_string(ifindex) + ")", ""});
  return Napi::Number::New(env, fd);
}

struct bpf_tc_hook Hook(int ifindex, const std::string& dir) {
  struct bpf_tc_hook h = {};
  h.sz = sizeof(h);
  h.ifindex = ifindex;
  h.attach_point = dir == "ingress" ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  return h;
}

// tcAttachLegacy(progFd, ifindex, direction, { priority = 1, handle = 1, replace = true })
//   -> { priority, handle }
// Creates the clsact qdisc if missing and adds a direct-action filter. Not a
// link: it stays until tcDetachLegacy or the interface goes away.
Napi::Value TcAttachLegacy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = IntArg(info, 0, "tcAttachLegacy");
  int ifindex = IntArg(info, 1, "tcAttachLegacy");
  std::string dir = StrArg(info, 2, "tcAttachLegacy");
  if (dir != "ingress" && dir != "egress") throw Napi::TypeError::New(env, "tcAttachLegacy: direction must be ingress or egress");
  __u32 priority = 1, handle = 1;
  bool replace = true;
  if (info.Length() > 3 && info[3].IsObject()) {
    Napi::Object o = info[3].As<Napi::Object>();
    if (o.Get("priority").IsNumber()) priority = o.Get("priority").As<Napi::Number>().Uint32Value();
    if (o.Get("handle").IsNumber()) handle = o.Get("handle").As<Napi::Number>().Uint32Value();
    if (o.Get("replace").IsBoolean()) replace = o.Get("replace").As<Napi::Boolean>();
  }
  struct bpf_tc_hook hook = Hook(ifindex, dir);
  BeginLogCapture();
  int ret = bpf_tc_hook_create(&hook);
  if (ret < 0 && ret != -EEXIST) ThrowIfNeg(env, ret, "bpf_tc_hook_create(ifindex " + std::to_string(ifindex) + ")");
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog, .flags = replace ? static_cast<__u32>(BPF_TC_F_REPLACE) : 0u, .handle = handle,
              .priority = priority);
  ret = bpf_tc_attach(&hook, &opts);
  ThrowIfNeg(env, ret, "bpf_tc_attach(ifindex " + std::to_string(ifindex) + " " + dir + ")");
  TakeLog();
  Napi::Object r = Napi::Object::New(env);
  r.Set("priority", opts.priority);
  r.Set("handle", opts.handle);
  r.Set("progId", opts.prog_id);
  return r;
}

// tcDetachLegacy(ifindex, direction, { priority, handle }) -> whether a filter was removed
Napi::Value TcDetachLegacy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int ifindex = IntArg(info, 0, "tcDetachLegacy");
  std::string dir = StrArg(info, 1, "tcDetachLegacy");
  __u32 priority = 1, handle = 1;
  if (info.Length() > 2 && info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    if (o.Get("priority").IsNumber()) priority = o.Get("priority").As<Napi::Number>().Uint32Value();
    if (o.Get("handle").IsNumber()) handle = o.Get("handle").As<Napi::Number>().Uint32Value();
  }
  struct bpf_tc_hook hook = Hook(ifindex, dir);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority);
  BeginLogCapture();
  int ret = bpf_tc_detach(&hook, &opts);
  if (ret == -ENOENT || ret == -ENODEV || ret == -EINVAL) {
    TakeLog();
    return Napi::Boolean::New(env, false);
  }
  ThrowIfNeg(env, ret, "bpf_tc_detach(ifindex " + std::to_string(ifindex) + " " + dir + ")");
  TakeLog();
  return Napi::Boolean::New(env, true);
}

// tcDestroyClsact(ifindex): removes the clsact qdisc and every filter on it.
Napi::Value TcDestroyClsact(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int ifindex = IntArg(info, 0, "tcDestroyClsact");
  struct bpf_tc_hook hook = {};
  hook.sz = sizeof(hook);
  hook.ifindex = ifindex;
  hook.attach_point = static_cast<enum bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
  BeginLogCapture();
  int ret = bpf_tc_hook_destroy(&hook);
  if (ret == -ENOENT || ret == -EINVAL) {
    TakeLog();
    return Napi::Boolean::New(env, false);
  }
  ThrowIfNeg(env, ret, "bpf_tc_hook_destroy(ifindex " + std::to_string(ifindex) + ")");
  TakeLog();
  return Napi::Boolean::New(env, true);
}

// progAttach(progFd, targetFd, attachType, flags = 0) / progDetach(progFd, targetFd, attachType)
// The pre-link API, e.g. BPF_SK_MSG_VERDICT on a sockhash fd where a link is
// not wanted. The attachment lives as long as the target.
Napi::Value ProgAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = IntArg(info, 0, "progAttach");
  int target = IntArg(info, 1, "progAttach");
  int type = IntArg(info, 2, "progAttach");
  unsigned flags = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Uint32Value() : 0;
  ThrowIfNeg(env, bpf_prog_attach(prog, target, static_cast<enum bpf_attach_type>(type), flags),
             "bpf_prog_attach(attach type " + std::to_string(type) + ")");
  return env.Undefined();
}

Napi::Value ProgDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = IntArg(info, 0, "progDetach");
  int target = IntArg(info, 1, "progDetach");
  int type = IntArg(info, 2, "progDetach");
  ThrowIfNeg(env, bpf_prog_detach2(prog, target, static_cast<enum bpf_attach_type>(type)),
             "bpf_prog_detach2(attach type " + std::to_string(type) + ")");
  return env.Undefined();
}

// linkDetach(linkFd): detaches the program now, even if the link is pinned
// (the link object lingers, defunct, until its last fd/pin goes).
Napi::Value LinkDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfNeg(env, bpf_link_detach(IntArg(info, 0, "linkDetach")), "bpf_link_detach");
  return env.Undefined();
}

// linkUpdate(linkFd, newProgFd): swaps the link's program atomically.
Napi::Value LinkUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int link = IntArg(info, 0, "linkUpdate");
  int prog = IntArg(info, 1, "linkUpdate");
  ThrowIfNeg(env, bpf_link_update(link, prog, nullptr), "bpf_link_update");
  return env.Undefined();
}

// linkInfo(linkFd) -> { id, type, progId, attachType?, cgroupId? }
Napi::Value LinkInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = IntArg(info, 0, "linkInfo");
  struct bpf_link_info li = {};
  __u32 len = sizeof(li);
  ThrowIfNeg(env, bpf_obj_get_info_by_fd(fd, &li, &len), "linkInfo: bpf_obj_get_info_by_fd");
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", li.id);
  o.Set("type", li.type);
  o.Set("typeName", libbpf_bpf_link_type_str(static_cast<enum bpf_link_type>(li.type)) ?: "unknown");
  o.Set("progId", li.prog_id);
  if (li.type == BPF_LINK_TYPE_CGROUP) {
    o.Set("cgroupId", Napi::BigInt::New(env, static_cast<uint64_t>(li.cgroup.cgroup_id)));
    o.Set("attachType", li.cgroup.attach_type);
  }
  return o;
}

}  // namespace

void InitLinks(Napi::Env env, Napi::Object exports) {
  exports.Set("linkCreate", Napi::Function::New<LinkCreate>(env, "linkCreate"));
  exports.Set("attachCgroup", Napi::Function::New<AttachCgroup>(env, "attachCgroup"));
  exports.Set("attachTcx", Napi::Function::New<AttachTcx>(env, "attachTcx"));
  exports.Set("tcAttachLegacy", Napi::Function::New<TcAttachLegacy>(env, "tcAttachLegacy"));
  exports.Set("tcDetachLegacy", Napi::Function::New<TcDetachLegacy>(env, "tcDetachLegacy"));
  exports.Set("tcDestroyClsact", Napi::Function::New<TcDestroyClsact>(env, "tcDestroyClsact"));
  exports.Set("progAttach", Napi::Function::New<ProgAttach>(env, "progAttach"));
  exports.Set("progDetach", Napi::Function::New<ProgDetach>(env, "progDetach"));
  exports.Set("linkDetach", Napi::Function::New<LinkDetach>(env, "linkDetach"));
  exports.Set("linkUpdate", Napi::Function::New<LinkUpdate>(env, "linkUpdate"));
  exports.Set("linkInfo", Napi::Function::New<LinkInfo>(env, "linkInfo"));
}

}  // namespace meshd
