// BpfObject: one ELF object file opened (and later loaded) through libbpf.
//
// Lifecycle: open (sync, parses ELF) -> load() (async: the verifier can take
// long for large programs, so it runs on the libuv pool) -> programs()/maps()
// expose file descriptors -> close() (idempotent; also run by the GC).
// Before load, read-only globals (.rodata tunables) are set with setGlobal()
// and map sizes with setMaxEntries(). With a pinRoot, maps declared with
// `__uint(pinning, LIBBPF_PIN_BY_NAME)` are reused from <pinRoot>/<map name>
// when a compatible pin exists, and pinned there otherwise (libbpf does both
// during load), so their contents survive the process.
// While a load() is in flight every other method throws EBUSY: libbpf's
// object is not safe to touch from two threads.
#pragma once
#include <bpf/libbpf.h>
#include <napi.h>
#include <atomic>
#include <string>

namespace meshd {

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit BpfObject(const Napi::CallbackInfo& info);
  ~BpfObject() override;

  struct bpf_object* obj() const { return obj_; }
  void SetLoading(bool v) { loading_ = v; }
  void SetLoaded() { loaded_ = true; }

 private:
  struct bpf_object* Live(Napi::Env env);  // throws if closed or busy
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Programs(const Napi::CallbackInfo& info);
  Napi::Value Maps(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value IsLoaded(const Napi::CallbackInfo& info);
  Napi::Value SetGlobal(const Napi::CallbackInfo& info);
  Napi::Value Globals(const Napi::CallbackInfo& info);
  Napi::Value SetMaxEntries(const Napi::CallbackInfo& info);
  Napi::Value ProgramFd(const Napi::CallbackInfo& info);
  Napi::Value MapFd(const Napi::CallbackInfo& info);
  struct bpf_map* FindMap(Napi::Env env, const std::string& name);

  struct bpf_object* obj_ = nullptr;
  std::atomic<bool> loading_{false};
  bool loaded_ = false;
  Napi::ObjectReference self_;  // keeps the wrapper alive during an async load
  friend class LoadWorker;
};

}  // namespace meshd
