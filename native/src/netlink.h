// The host's addresses over rtnetlink: a dump and a watcher (see netlink.cc).
#pragma once
#include <napi.h>

namespace meshd {
void InitNetlink(Napi::Env env, Napi::Object exports);
}
