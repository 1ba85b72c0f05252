// Stateless operations on file descriptors (programs and maps).
#pragma once
#include <napi.h>

namespace meshd {
void InitOps(Napi::Env env, Napi::Object exports);
}
