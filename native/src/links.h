// Attaching programs: BPF links (cgroup, tcx, raw), tc clsact, prog_attach.
#pragma once
#include <napi.h>

namespace meshd {
void InitLinks(Napi::Env env, Napi::Object exports);
}
