// Reading the JavaScript arguments of an addon function, and exporting one.
// A wrong argument is a TypeError naming the function (`what`), thrown before
// anything reaches the kernel.
#pragma once
#include <napi.h>
#include <string>

namespace meshd {

inline int FdArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + ": fd must be a number");
  }
  return info[i].As<Napi::Number>().Int32Value();
}

inline Napi::Buffer<uint8_t> BufArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsBuffer()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + ": argument " + std::to_string(i) + " must be a Buffer");
  }
  return info[i].As<Napi::Buffer<uint8_t>>();
}

// exports[name] = F, under the same name in JavaScript and in stack traces.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
void Export(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New<F>(env, name));
}

}  // namespace meshd
