// meshd_native: the datapath's only door to the kernel, over libbpf.
// JS usage goes through native/index.ts, which types and documents it.
#include <napi.h>

#include "errors.h"
#include "object.h"
#include "links.h"
#include "maps.h"
#include "ops.h"
#include "netlink.h"
#include "ringbuf.h"
#include "transparent.h"

namespace meshd {

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfLogger();
  libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
  exports.Set("BpfObject", BpfObject::Init(env));
  InitOps(env, exports);
  InitMaps(env, exports);
  InitLinks(env, exports);
  InitRingBuf(env, exports);
  InitNetlink(env, exports);
  InitTransparent(env, exports);
  return exports;
}

}  // namespace meshd

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return meshd::Init(env, exports); }

NODE_API_MODULE(meshd_native, InitModule)
