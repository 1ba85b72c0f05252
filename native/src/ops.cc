#include "ops.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <string>
#include <vector>

#include "errors.h"

namespace meshd {
namespace {

int FdArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + ": fd must be a number");
  }
  return info[i].As<Napi::Number>().Int32Value();
}

Napi::Buffer<uint8_t> BufArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsBuffer()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + ": expected a Buffer");
  }
  return info[i].As<Napi::Buffer<uint8_t>>();
}

// libbpfVersion(): "major.minor"
Napi::Value LibbpfVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), libbpf_version_string());
}

// progTestRun(progFd, data, { repeat?, dataSizeOut? }) -> { retval, durationNs, dataOut }
// BPF_PROG_TEST_RUN runs the program in the kernel on a copy of `data`.
Napi::Value ProgTestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "progTestRun");
  Napi::Buffer<uint8_t> data = BufArg(info, 1, "progTestRun");
  uint32_t repeat = 1;
  size_t out_size = data.Length() + 256;
  if (info.Length() > 2 && info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    if (o.Get("repeat").IsNumber()) repeat = o.Get("repeat").As<Napi::Number>().Uint32Value();
    if (o.Get("dataSizeOut").IsNumber()) out_size = o.Get("dataSizeOut").As<Napi::Number>().Uint32Value();
  }
  std::vector<uint8_t> out(out_size);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data.Data(), .data_out = out.data(),
              .data_size_in = static_cast<__u32>(data.Length()), .data_size_out = static_cast<__u32>(out.size()),
              .repeat = static_cast<int>(repeat));
  int ret = bpf_prog_test_run_opts(fd, &opts);
  ThrowIfNeg(env, ret, "bpf_prog_test_run");
  Napi::Object r = Napi::Object::New(env);
  r.Set("retval", Napi::Number::New(env, opts.retval));
  r.Set("durationNs", Napi::Number::New(env, opts.duration));
  r.Set("dataOut", Napi::Buffer<uint8_t>::Copy(env, out.data(), opts.data_size_out));
  return r;
}

// mapLookup(mapFd, key, valueSize) -> Buffer | null
Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "mapLookup");
  Napi::Buffer<uint8_t> key = BufArg(info, 1, "mapLookup");
  if (info.Length() < 3 || !info[2].IsNumber()) throw Napi::TypeError::New(env, "mapLookup: valueSize must be a number");
  std::vector<uint8_t> value(info[2].As<Napi::Number>().Uint32Value());
  int ret = bpf_map_lookup_elem(fd, key.Data(), value.data());
  if (ret < 0 && errno == ENOENT) return env.Null();
  ThrowIfNeg(env, ret, "bpf_map_lookup_elem");
  return Napi::Buffer<uint8_t>::Copy(env, value.data(), value.size());
}

}  // namespace

void InitOps(Napi::Env env, Napi::Object exports) {
  exports.Set("libbpfVersion", Napi::Function::New<LibbpfVersion>(env, "libbpfVersion"));
  exports.Set("progTestRun", Napi::Function::New<ProgTestRun>(env, "progTestRun"));
  exports.Set("mapLookup", Napi::Function::New<MapLookup>(env, "mapLookup"));
}

}  // namespace meshd
