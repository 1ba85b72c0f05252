#include "object.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

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
                         InstanceMethod<&BpfObject::SetGlobal>("setGlobal"),
                         InstanceMethod<&BpfObject::Globals>("globals"),
                         InstanceMethod<&BpfObject::SetMaxEntries>("setMaxEntries"),
                         InstanceMethod<&BpfObject::ProgramFd>("programFd"),
                         InstanceMethod<&BpfObject::MapFd>("mapFd"),
                     });
}

// new BpfObject(path: string, opts?: { pinRoot?: string })
// Maps declared LIBBPF_PIN_BY_NAME are pinned under pinRoot; without one, nothing is pinned.
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
  if (pin_root.empty()) {
    // Without a pin root libbpf would pin LIBBPF_PIN_BY_NAME maps straight
    // under /sys/fs/bpf, shared by every caller: an object opened without a
    // pinRoot keeps its maps private instead.
    struct bpf_map* map;
    bpf_object__for_each_map(map, obj) {
      if (bpf_map__pin_path(map)) bpf_map__set_pin_path(map, nullptr);
    }
  }
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
    m.Set("flags", bpf_map__map_flags(map));
    m.Set("fd", loaded_ ? bpf_map__fd(map) : -1);
    const char* pin = bpf_map__pin_path(map);
    m.Set("pinPath", pin ? Napi::Value(Napi::String::New(env, pin)) : env.Null());
    m.Set("pinned", bpf_map__is_pinned(map));
    m.Set("internal", bpf_map__is_internal(map));
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

namespace {

struct GlobalVar {
  std::string name;
  std::string section;  // ".rodata", ".data", ".bss"
  uint32_t offset;
  uint32_t size;
};

// Global variables as BTF describes them: each DATASEC (".rodata", ".data",
// ".bss") lists its variables with their offset inside the section's map.
std::vector<GlobalVar> ListGlobals(struct bpf_object* obj) {
  std::vector<GlobalVar> out;
  struct btf* btf = bpf_object__btf(obj);
  if (!btf) return out;
  __u32 n = btf__type_cnt(btf);
  for (__u32 id = 1; id < n; id++) {
    const struct btf_type* t = btf__type_by_id(btf, id);
    if (!btf_is_datasec(t)) continue;
    const char* sec = btf__name_by_offset(btf, t->name_off);
    if (sec && strcmp(sec, ".maps") == 0) continue;  // map definitions, not variables
    const struct btf_var_secinfo* vs = btf_var_secinfos(t);
    for (__u16 i = 0; i < btf_vlen(t); i++, vs++) {
      const struct btf_type* var = btf__type_by_id(btf, vs->type);
      out.push_back(GlobalVar{btf__name_by_offset(btf, var->name_off), sec ? sec : "", vs->offset, vs->size});
    }
  }
  return out;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

struct bpf_map* BpfObject::FindMap(Napi::Env env, const std::string& name) {
  struct bpf_map* map = bpf_object__find_map_by_name(Live(env), name.c_str());
  if (!map) Throw(env, Failure{ENOENT, "map " + name + " not in object " + bpf_object__name(obj_), ""});
  return map;
}

// setGlobal(name, value: Buffer): sets a global variable's initial value
// before load. For `const volatile` globals (.rodata) this is how tunables
// reach the program: the verifier then sees them as constants and prunes
// dead branches. The Buffer must be exactly the variable's size.
Napi::Value BpfObject::SetGlobal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_object* obj = Live(env);
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsBuffer()) {
    throw Napi::TypeError::New(env, "setGlobal(name: string, value: Buffer)");
  }
  std::string name = info[0].As<Napi::String>();
  Napi::Buffer<uint8_t> value = info[1].As<Napi::Buffer<uint8_t>>();
  if (loaded_) Throw(env, Failure{EBUSY, "setGlobal(" + name + "): object already loaded", ""});
  for (const GlobalVar& g : ListGlobals(obj)) {
    if (g.name != name) continue;
    if (value.Length() != g.size) {
      Throw(env, Failure{EINVAL, "setGlobal(" + name + "): variable is " + std::to_string(g.size) + " bytes, got " +
                                     std::to_string(value.Length()), ""});
    }
    struct bpf_map* map;
    bpf_object__for_each_map(map, obj) {
      if (!bpf_map__is_internal(map) || !EndsWith(bpf_map__name(map), g.section)) continue;
      size_t sz = 0;
      const void* cur = bpf_map__initial_value(map, &sz);
      if (!cur || g.offset + g.size > sz) break;
      std::vector<uint8_t> data(static_cast<const uint8_t*>(cur), static_cast<const uint8_t*>(cur) + sz);
      memcpy(data.data() + g.offset, value.Data(), g.size);
      BeginLogCapture();
      int ret = bpf_map__set_initial_value(map, data.data(), data.size());
      ThrowIfNeg(env, ret, "bpf_map__set_initial_value(" + name + ")");
      TakeLog();
      return env.Undefined();
    }
    Throw(env, Failure{ENOENT, "setGlobal(" + name + "): no map for section " + g.section, ""});
  }
  Throw(env, Failure{ENOENT, "setGlobal(" + name + "): no such global in " + bpf_object__name(obj), ""});
}

// globals(): [{ name, section, offset, size }] from BTF.
Napi::Value BpfObject::Globals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  for (const GlobalVar& g : ListGlobals(Live(env))) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", g.name);
    o.Set("section", g.section);
    o.Set("offset", g.offset);
    o.Set("size", g.size);
    out.Set(i++, o);
  }
  return out;
}

// setMaxEntries(mapName, n): before load only.
Napi::Value BpfObject::SetMaxEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "setMaxEntries(map: string, n: number)");
  }
  std::string name = info[0].As<Napi::String>();
  struct bpf_map* map = FindMap(env, name);
  BeginLogCapture();
  ThrowIfNeg(env, bpf_map__set_max_entries(map, info[1].As<Napi::Number>().Uint32Value()),
             "bpf_map__set_max_entries(" + name + ")");
  TakeLog();
  return env.Undefined();
}

// programFd(name) / mapFd(name): the fd of a loaded program or map, by its
// name in the object (the C identifier, not the kernel's 15-char copy).
Napi::Value BpfObject::ProgramFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "programFd(name: string)");
  std::string name = info[0].As<Napi::String>();
  struct bpf_program* prog = bpf_object__find_program_by_name(Live(env), name.c_str());
  if (!prog) Throw(env, Failure{ENOENT, "program " + name + " not in object " + bpf_object__name(obj_), ""});
  if (!loaded_) Throw(env, Failure{EBADF, "programFd(" + name + "): object not loaded", ""});
  return Napi::Number::New(env, bpf_program__fd(prog));
}

Napi::Value BpfObject::MapFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "mapFd(name: string)");
  std::string name = info[0].As<Napi::String>();
  struct bpf_map* map = FindMap(env, name);
  if (!loaded_) Throw(env, Failure{EBADF, "mapFd(" + name + "): object not loaded", ""});
  return Napi::Number::New(env, bpf_map__fd(map));
}

}  // namespace meshd
