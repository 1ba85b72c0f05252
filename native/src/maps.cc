// Map operations on file descriptors: the map may come from a loaded
// BpfObject (mapFd) or from a pin (objGet). Keys and values are Buffers laid
// out by the TypeScript codecs; sizes are checked against the map's own
// key/value sizes (read once per call with BPF_OBJ_GET_INFO_BY_FD) so a codec
// that drifted from the C struct fails loudly instead of corrupting a map.
//
// Per-CPU maps are not handled here: their values are value_size rounded up
// to 8, times the number of possible CPUs.
#include "maps.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524  // kernel-internal "operation not supported", seen by userspace
#endif

namespace meshd {
namespace {

uint64_t FlagsArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined()) return BPF_ANY;
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "flags must be a number");
  return info[i].As<Napi::Number>().Int64Value();
}

struct MapShape {
  uint32_t type;
  uint32_t key_size;
  uint32_t value_size;
  uint32_t max_entries;
};

MapShape Shape(Napi::Env env, int fd, const char* what) {
  struct bpf_map_info mi = {};
  __u32 len = sizeof(mi);
  int ret = bpf_obj_get_info_by_fd(fd, &mi, &len);
  ThrowIfNeg(env, ret, std::string(what) + ": bpf_obj_get_info_by_fd");
  return MapShape{mi.type, mi.key_size, mi.value_size, mi.max_entries};
}

void CheckSize(Napi::Env env, const char* what, const char* which, size_t got, uint32_t want) {
  if (got != want) {
    Throw(env, Failure{EINVAL, std::string(what) + ": " + which + " is " + std::to_string(got) + " bytes, map wants " +
                                   std::to_string(want), ""});
  }
}

// Buffer[] -> one contiguous array of fixed-size records.
std::vector<uint8_t> Pack(Napi::Env env, const Napi::Value& v, uint32_t rec, const char* what, uint32_t* count) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string(what) + ": expected an array of Buffers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<uint8_t> out(static_cast<size_t>(a.Length()) * rec);
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsBuffer()) throw Napi::TypeError::New(env, std::string(what) + "[" + std::to_string(i) + "]: not a Buffer");
    Napi::Buffer<uint8_t> b = e.As<Napi::Buffer<uint8_t>>();
    CheckSize(env, what, ("element " + std::to_string(i)).c_str(), b.Length(), rec);
    memcpy(out.data() + static_cast<size_t>(i) * rec, b.Data(), rec);
  }
  *count = a.Length();
  return out;
}

bool NoBatch(int err) { return err == ENOTSUPP || err == EOPNOTSUPP || err == ENOSYS; }

// mapInfo(fd) -> { id, name, type, keySize, valueSize, maxEntries, flags }
Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "mapInfo");
  struct bpf_map_info mi = {};
  __u32 len = sizeof(mi);
  ThrowIfNeg(env, bpf_obj_get_info_by_fd(fd, &mi, &len), "mapInfo: bpf_obj_get_info_by_fd");
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", mi.id);
  o.Set("name", mi.name);
  o.Set("type", mi.type);
  o.Set("typeName", libbpf_bpf_map_type_str(static_cast<enum bpf_map_type>(mi.type)) ?: "unknown");
  o.Set("keySize", mi.key_size);
  o.Set("valueSize", mi.value_size);
  o.Set("maxEntries", mi.max_entries);
  o.Set("flags", mi.map_flags);
  return o;
}

// mapLookup(fd, key, valueSize) -> Buffer | null
Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "mapLookup");
  Napi::Buffer<uint8_t> key = BufArg(info, 1, "mapLookup");
  if (info.Length() < 3 || !info[2].IsNumber()) throw Napi::TypeError::New(env, "mapLookup: valueSize must be a number");
  std::vector<uint8_t> value(info[2].As<Napi::Number>().Uint32Value());
  int ret = bpf_map_lookup_elem(fd, key.Data(), value.data());
  if (ret < 0 && errno == ENOENT) return env.Null();
  ThrowIfNeg(env, ret, "bpf_map_lookup_elem");
  return Napi::Buffer<uint8_t>::Copy(env, value.data(), value.size());
}

// mapUpdate(fd, key, value, flags = BPF_ANY)
// BPF_NOEXIST fails with EEXIST if present, BPF_EXIST with ENOENT if absent.
Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "mapUpdate");
  Napi::Buffer<uint8_t> key = BufArg(info, 1, "mapUpdate");
  Napi::Buffer<uint8_t> value = BufArg(info, 2, "mapUpdate");
  MapShape s = Shape(env, fd, "mapUpdate");
  CheckSize(env, "mapUpdate", "key", key.Length(), s.key_size);
  CheckSize(env, "mapUpdate", "value", value.Length(), s.value_size);
  ThrowIfNeg(env, bpf_map_update_elem(fd, key.Data(), value.Data(), FlagsArg(info, 3)), "bpf_map_update_elem");
  return env.Undefined();
}

// mapDelete(fd, key) -> whether the key existed
Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "mapDelete");
  Napi::Buffer<uint8_t> key = BufArg(info, 1, "mapDelete");
  int ret = bpf_map_delete_elem(fd, key.Data());
  if (ret < 0 && errno == ENOENT) return Napi::Boolean::New(env, false);
  ThrowIfNeg(env, ret, "bpf_map_delete_elem");
  return Napi::Boolean::New(env, true);
}

// mapUpdateBatch(fd, keys: Buffer[], values: Buffer[], flags = BPF_ANY) -> { count, batched }
// One BPF_MAP_UPDATE_BATCH where the map type has it, else one update per
// entry. Either way the entries land one by one as far as readers can tell:
// batching saves syscalls, it is not a transaction.
Napi::Value MapUpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "mapUpdateBatch");
  if (info.Length() < 3) throw Napi::TypeError::New(env, "mapUpdateBatch(fd, keys, values, flags?)");
  MapShape s = Shape(env, fd, "mapUpdateBatch");
  uint32_t nk = 0, nv = 0;
  std::vector<uint8_t> keys = Pack(env, info[1], s.key_size, "mapUpdateBatch keys", &nk);
  std::vector<uint8_t> values = Pack(env, info[2], s.value_size, "mapUpdateBatch values", &nv);
  if (nk != nv) Throw(env, Failure{EINVAL, "mapUpdateBatch: " + std::to_string(nk) + " keys but " + std::to_string(nv) + " values", ""});
  uint64_t flags = FlagsArg(info, 3);
  Napi::Object r = Napi::Object::New(env);
  if (nk == 0) {
    r.Set("count", 0);
    r.Set("batched", false);
    return r;
  }
  // The batch syscall takes no NOEXIST/EXIST (only BPF_F_LOCK): those go entry by entry.
  if ((flags & ~static_cast<uint64_t>(BPF_F_LOCK)) == 0) {
    __u32 count = nk;
    LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = flags);
    int ret = bpf_map_update_batch(fd, keys.data(), values.data(), &count, &opts);
    if (ret == 0) {
      r.Set("count", count);
      r.Set("batched", true);
      return r;
    }
    int err = errno;
    if (!NoBatch(err)) {
      Throw(env, Failure{err, "bpf_map_update_batch (failed after " + std::to_string(count) + " of " + std::to_string(nk) + ")", ""});
    }
  }
  for (uint32_t i = 0; i < nk; i++) {
    int rc = bpf_map_update_elem(fd, keys.data() + static_cast<size_t>(i) * s.key_size,
                                 values.data() + static_cast<size_t>(i) * s.value_size, flags);
    if (rc < 0) Throw(env, Failure{errno, "bpf_map_update_elem (entry " + std::to_string(i) + " of " + std::to_string(nk) + ")", ""});
  }
  r.Set("count", nk);
  r.Set("batched", false);
  return r;
}

// mapDeleteBatch(fd, keys: Buffer[]) -> number of keys that existed and were deleted
// Keys that are absent are skipped (the kernel's batch delete stops at the
// first absent key with ENOENT; we resume after it).
Napi::Value MapDeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "mapDeleteBatch");
  if (info.Length() < 2) throw Napi::TypeError::New(env, "mapDeleteBatch(fd, keys)");
  MapShape s = Shape(env, fd, "mapDeleteBatch");
  uint32_t nk = 0;
  std::vector<uint8_t> keys = Pack(env, info[1], s.key_size, "mapDeleteBatch keys", &nk);
  uint32_t done = 0, deleted = 0;
  bool batch = true;
  while (done < nk) {
    if (batch) {
      __u32 count = nk - done;
      LIBBPF_OPTS(bpf_map_batch_opts, opts);
      int ret = bpf_map_delete_batch(fd, keys.data() + static_cast<size_t>(done) * s.key_size, &count, &opts);
      if (ret == 0) {
        deleted += count;
        done += count;
        continue;
      }
      int err = errno;
      if (err == ENOENT) {
        deleted += count;
        done += count + 1;  // keys[done + count] was absent
        continue;
      }
      if (!NoBatch(err)) Throw(env, Failure{err, "bpf_map_delete_batch", ""});
      batch = false;
      continue;
    }
    int rc = bpf_map_delete_elem(fd, keys.data() + static_cast<size_t>(done) * s.key_size);
    if (rc == 0) {
      deleted++;
    } else if (errno != ENOENT) {
      Throw(env, Failure{errno, "bpf_map_delete_elem (entry " + std::to_string(done) + ")", ""});
    }
    done++;
  }
  return Napi::Number::New(env, deleted);
}

// mapGetNextKey(fd, key | null) -> Buffer | null (null: no more keys)
Napi::Value MapGetNextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "mapGetNextKey");
  MapShape s = Shape(env, fd, "mapGetNextKey");
  std::vector<uint8_t> next(s.key_size);
  const void* cur = nullptr;
  if (info.Length() > 1 && info[1].IsBuffer()) {
    Napi::Buffer<uint8_t> k = info[1].As<Napi::Buffer<uint8_t>>();
    CheckSize(env, "mapGetNextKey", "key", k.Length(), s.key_size);
    cur = k.Data();
  }
  int ret = bpf_map_get_next_key(fd, cur, next.data());
  if (ret < 0 && errno == ENOENT) return env.Null();
  ThrowIfNeg(env, ret, "bpf_map_get_next_key");
  return Napi::Buffer<uint8_t>::Copy(env, next.data(), next.size());
}

// mapDump(fd) -> Array<[key: Buffer, value: Buffer]>
// Walks with get_next_key + lookup. A key deleted between the two calls is
// skipped; on a hash map a concurrent delete can restart the walk, so a dump
// taken while the datapath writes is a best effort (meshd's own maps are
// written only by the agent).
Napi::Value MapDump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "mapDump");
  MapShape s = Shape(env, fd, "mapDump");
  Napi::Array out = Napi::Array::New(env);
  std::vector<uint8_t> key(s.key_size), next(s.key_size), value(s.value_size);
  bool first = true;
  uint32_t n = 0;
  // Bound the walk: a hash map being rewritten under us could otherwise loop.
  uint64_t guard = static_cast<uint64_t>(s.max_entries) * 4 + 16;
  for (uint64_t steps = 0; steps < guard; steps++) {
    int ret = bpf_map_get_next_key(fd, first ? nullptr : key.data(), next.data());
    if (ret < 0 && errno == ENOENT) break;
    ThrowIfNeg(env, ret, "bpf_map_get_next_key");
    first = false;
    key.swap(next);
    ret = bpf_map_lookup_elem(fd, key.data(), value.data());
    if (ret < 0 && errno == ENOENT) continue;
    ThrowIfNeg(env, ret, "bpf_map_lookup_elem");
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::Buffer<uint8_t>::Copy(env, key.data(), key.size()));
    pair.Set(1u, Napi::Buffer<uint8_t>::Copy(env, value.data(), value.size()));
    out.Set(n++, pair);
  }
  return out;
}

}  // namespace

void InitMaps(Napi::Env env, Napi::Object exports) {
  Export<MapInfo>(env, exports, "mapInfo");
  Export<MapLookup>(env, exports, "mapLookup");
  Export<MapUpdate>(env, exports, "mapUpdate");
  Export<MapDelete>(env, exports, "mapDelete");
  Export<MapUpdateBatch>(env, exports, "mapUpdateBatch");
  Export<MapDeleteBatch>(env, exports, "mapDeleteBatch");
  Export<MapGetNextKey>(env, exports, "mapGetNextKey");
  Export<MapDump>(env, exports, "mapDump");
}

}  // namespace meshd
