#include "object.h"

#include <bpf/bpf.h>
#include <cerrno>
#include <string>

#include "errors.h"

namespace meshd {

// Runs bpf_object__load off the JS thread and settles a promise.
class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, BpfObject* owner, Napi::Object self)
      : Napi::AsyncWorker(env, "meshd:bpf_object__load"), owner_(owner), deferred_(Napi::Promise::Deferred::New(env)) {
    owner_->self_ = Napi::Persistent(self);
    name_ = bpf_object__name(owner_->obj());
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    BeginLogCapture();
    int ret = bpf_object__load(owner_->obj());
    std::string log = TakeLog();
    if (ret < 0) failure_ = Failure{-ret, "bpf_object__load(" + name_ + ")", log};
  }
  void OnOK() override {
    Finish();
    if (failure_.err != 0) {
      deferred_.Reject(MakeError(Env(), failure_).Value());
      return;
    }
    owner_->SetLoaded();
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    Finish();
    deferred_.Reject(e.Value());
  }

 private:
  void Finish() {
    owner_->SetLoading(false);
    owner_->self_.Reset();
  }
  BpfObject* owner_;
  Napi::Promise::Deferred deferred_;
  Failure failure_;
  std::string name_;
};

Napi::Function BpfObject::Init(Napi::Env env) {
  return DefineClass(env, "BpfObject",
                     {
                         InstanceMethod<&BpfObject::Load>("load"),
                         InstanceMethod<&BpfObject::Programs>("programs"),
                         InstanceMethod<&BpfObject::Maps>("maps"),
                         InstanceMethod<&BpfObject::Close>("close"),
                         InstanceMethod<&BpfObject::IsLoaded>("isLoaded"),
                     });
}

// new BpfObject(path: string, opts?: { pinRoot?: string })
BpfObject::BpfObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObject>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    throw Napi::TypeError::New(env, "BpfObject(path): path must be a string");
  }
  std::string path = info[0].As<Napi::String>();
  std::string pin_root;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Value v = info[1].As<Napi::Object>().Get("pinRoot");
    if (v.IsString()) pin_root = v.As<Napi::String>();
  }
  struct bpf_object_open_opts opts = {};
  opts.sz = sizeof(opts);
  if (!pin_root.empty()) opts.pin_root_path = pin_root.c_str();
  BeginLogCapture();
  struct bpf_object* obj = bpf_object__open_file(path.c_str(), &opts);
  std::string log = TakeLog();
  long err = libbpf_get_error(obj);
  if (err) Throw(env, Failure{static_cast<int>(-err), "bpf_object__open_file(" + path + ")", log});
  obj_ = obj;
}

BpfObject::~BpfObject() {
  if (obj_ && !loading_) bpf_object__close(obj_);
}

struct bpf_object* BpfObject::Live(Napi::Env env) {
  if (!obj_) Throw(env, Failure{EBADF, "BpfObject is closed", ""});
  if (loading_) Throw(env, Failure{EBUSY, "BpfObject is loading", ""});
  return obj_;
}

Napi::Value BpfObject::Load(const Napi::CallbackInfo& info) {
  Live(info.Env());
  if (loaded_) Throw(info.Env(), Failure{EALREADY, "bpf_object__load: already loaded", ""});
  loading_ = true;
  auto* w = new LoadWorker(info.Env(), this, info.This().As<Napi::Object>());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value BpfObject::Programs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_object* obj = Live(env);
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  struct bpf_program* prog;
  bpf_object__for_each_program(prog, obj) {
    Napi::Object p = Napi::Object::New(env);
    p.Set("name", bpf_program__name(prog));
    p.Set("section", bpf_program__section_name(prog));
    p.Set("type", static_cast<double>(bpf_program__type(prog)));
    p.Set("typeName", libbpf_bpf_prog_type_str(bpf_program__type(prog)) ?: "unknown");
    p.Set("expectedAttachType", static_cast<double>(bpf_program__expected_attach_type(prog)));
    p.Set("fd", loaded_ ? bpf_program__fd(prog) : -1);
    out.Set(i++, p);
  }
  return out;
}

Napi::Value BpfObject::Maps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_object* obj = Live(env);
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  struct bpf_map* map;
  bpf_object__for_each_map(map, obj) {
    Napi::Object m = Napi::Object::New(env);
    m.Set("name", bpf_map__name(map));
    m.Set("type", static_cast<double>(bpf_map__type(map)));
    m.Set("typeName", libbpf_bpf_map_type_str(bpf_map__type(map)) ?: "unknown");
    m.Set("keySize", bpf_map__key_size(map));
    m.Set("valueSize", bpf_map__value_size(map));
    m.Set("maxEntries", bpf_map__max_entries(map));
    m.Set("fd", loaded_ ? bpf_map__fd(map) : -1);
    out.Set(i++, m);
  }
  return out;
}

Napi::Value BpfObject::Close(const Napi::CallbackInfo& info) {
  if (loading_) Throw(info.Env(), Failure{EBUSY, "BpfObject.close during load", ""});
  if (obj_) {
    bpf_object__close(obj_);
    obj_ = nullptr;
  }
  return info.Env().Undefined();
}

Napi::Value BpfObject::IsLoaded(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), obj_ != nullptr && loaded_);
}

}  // namespace meshd
