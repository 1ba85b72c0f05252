// Transparent UDP/TCP sockets for the DNS proxy (IP_TRANSPARENT, original destination).
#pragma once
#include <napi.h>

namespace meshd {
void InitTransparent(Napi::Env env, Napi::Object exports);
}
