// Map operations by fd (lookup, update, delete, batch, dump).
#pragma once
#include <napi.h>

namespace meshd {
void InitMaps(Napi::Env env, Napi::Object exports);
}
