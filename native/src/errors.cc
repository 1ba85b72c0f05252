#include "errors.h"

#include <bpf/libbpf.h>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace meshd {
namespace {

thread_local bool capturing = false;
thread_local std::string captured;

int PrintFn(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (!capturing) {
    return 0;  // silence libbpf outside captured calls; callers get the text on error
  }
  if (level == LIBBPF_DEBUG) return 0;
  char buf[4096];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(buf, sizeof(buf), fmt, copy);
  va_end(copy);
  if (n < 0) return n;
  if (static_cast<size_t>(n) < sizeof(buf)) {
    captured.append(buf, n);
  } else {
    std::string big(static_cast<size_t>(n) + 1, '\0');
    vsnprintf(big.data(), big.size(), fmt, args);
    big.pop_back();
    captured.append(big);
  }
  // Bound memory: verifier logs can be megabytes; keep the tail, which holds the reason.
  const size_t kMax = 1 << 20;
  if (captured.size() > kMax) captured.erase(0, captured.size() - kMax);
  return n;
}

const char* ErrnoName(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case E2BIG: return "E2BIG";
    case ERANGE: return "ERANGE";
    case ENOSYS: return "ENOSYS";
    case ENOTSUP: return "ENOTSUP";
    case ENOTEMPTY: return "ENOTEMPTY";
    case ELOOP: return "ELOOP";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EOVERFLOW: return "EOVERFLOW";
    case ENOEXEC: return "ENOEXEC";
    default: return "EUNKNOWN";
  }
}

}  // namespace

void InstallLibbpfLogger() { libbpf_set_print(PrintFn); }

void BeginLogCapture() {
  capturing = true;
  captured.clear();
}

std::string TakeLog() {
  capturing = false;
  std::string out;
  out.swap(captured);
  return out;
}

Napi::Error MakeError(Napi::Env env, const Failure& f) {
  char desc[256];
  libbpf_strerror(f.err, desc, sizeof(desc));
  std::string msg = f.what + ": " + desc;
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("errno", Napi::Number::New(env, f.err));
  e.Set("code", Napi::String::New(env, ErrnoName(f.err)));
  e.Set("syscall", Napi::String::New(env, f.what));
  e.Set("libbpfLog", Napi::String::New(env, f.log));
  return e;
}

void Throw(Napi::Env env, const Failure& f) { throw MakeError(env, f); }

void ThrowIfNeg(Napi::Env env, long ret, const std::string& what) {
  if (ret >= 0) return;
  int err = ret == -1 ? errno : static_cast<int>(-ret);
  Throw(env, Failure{err, what, TakeLog()});
}

}  // namespace meshd
