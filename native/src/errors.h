// Turning libbpf/kernel failures into JavaScript exceptions.
//
// libbpf reports through a process-wide print callback. We capture what it
// prints on the calling thread (thread_local), so a failure raised on a worker
// thread carries its own log (the verifier log on a failed load) and not
// another thread's.
#pragma once
#include <napi.h>
#include <string>

namespace meshd {

// Installs the libbpf print callback; call once at module init.
void InstallLibbpfLogger();

// Starts capturing libbpf's output on this thread; TakeLog() returns and clears it.
void BeginLogCapture();
std::string TakeLog();

// A failure as data: usable off the JS thread, thrown on it.
struct Failure {
  int err = 0;          // positive errno
  std::string what;     // what we were doing, e.g. "bpf_object__load(probe.o)"
  std::string log;      // libbpf's captured output (verifier log included)
};

// Builds Error{message, errno, code, syscall, libbpfLog}.
Napi::Error MakeError(Napi::Env env, const Failure& f);
[[noreturn]] void Throw(Napi::Env env, const Failure& f);
// Throws for a negative libbpf/kernel return value (or errno when ret == -1).
void ThrowIfNeg(Napi::Env env, long ret, const std::string& what);

}  // namespace meshd
