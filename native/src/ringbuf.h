// RingBufferReader: ring-buffer events to JavaScript off the event loop.
#pragma once
#include <napi.h>

namespace meshd {
void InitRingBuf(Napi::Env env, Napi::Object exports);
}
