// RingBufferReader: events from a BPF_MAP_TYPE_RINGBUF map delivered to a
// JavaScript callback without blocking the event loop.
//
// The worker thread (JsEventSource, event-source.h) waits on libbpf's
// ring-buffer epoll fd (readable when the kernel committed records), drains
// the records with ring_buffer__consume, copies them (the ring's memory is
// reused as soon as the callback returns) and hands the batch to the JS
// thread, which calls `onEvents(buffers: Buffer[])`. If more than `maxPending`
// batches are waiting for the JS thread, new records are counted as lost
// instead (lost()).
//
// close() is idempotent; events still queued for the JS thread are dropped.
#include "ringbuf.h"

#include <bpf/libbpf.h>
#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "event-source.h"

namespace meshd {
namespace {

using Batch = std::vector<std::vector<uint8_t>>;

class RingBufferReader : public JsEventSource<RingBufferReader, Batch> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineWith(env, "RingBufferReader",
                      {
                          InstanceMethod<&RingBufferReader::Lost>("lost"),
                          InstanceMethod<&RingBufferReader::Delivered>("delivered"),
                      });
  }

  // new RingBufferReader(mapFd, onEvents, { maxPending = 1024 })
  explicit RingBufferReader(const Napi::CallbackInfo& info) : JsEventSource(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
      throw Napi::TypeError::New(env, "RingBufferReader(mapFd: number, onEvents: (events: Buffer[]) => void, opts?)");
    }
    int map_fd = info[0].As<Napi::Number>().Int32Value();
    if (info.Length() > 2 && info[2].IsObject()) {
      Napi::Value mp = info[2].As<Napi::Object>().Get("maxPending");
      if (mp.IsNumber()) max_pending_ = mp.As<Napi::Number>().Uint32Value();
    }
    BeginLogCapture();
    rb_ = ring_buffer__new(map_fd, &RingBufferReader::OnSample, this, nullptr);
    if (!rb_) {
      int err = errno;
      Throw(env, Failure{err, "ring_buffer__new(map fd " + std::to_string(map_fd) + ")", TakeLog()});
    }
    TakeLog();
    Start(info, info[1].As<Napi::Function>(), "meshd:ringbuf", ring_buffer__epoll_fd(rb_));
  }

  ~RingBufferReader() override {
    Shutdown();
    OnClosed();
  }

  // Worker thread.
  void Drain() {
    batch_.clear();
    if (ring_buffer__consume(rb_) < 0) return;
    if (batch_.empty()) return;
    if (pending_.load() >= max_pending_) {
      lost_ += batch_.size();
      return;
    }
    auto out = std::make_unique<Batch>(std::move(batch_));
    batch_ = Batch();
    const size_t n = out->size();
    pending_++;
    if (!Deliver(std::move(out))) {
      pending_--;
      lost_ += n;
    }
  }

  void Arrived(const Batch&) { pending_--; }

  Napi::Value ToJs(Napi::Env env, const Batch& batch) {
    Napi::Array arr = Napi::Array::New(env, batch.size());
    for (size_t i = 0; i < batch.size(); i++) {
      arr.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, batch[i].data(), batch[i].size()));
    }
    delivered_ += batch.size();
    return arr;
  }

  void OnClosed() {
    if (rb_) ring_buffer__free(rb_);
    rb_ = nullptr;
  }

 private:
  static int OnSample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<RingBufferReader*>(ctx);
    const auto* p = static_cast<const uint8_t*>(data);
    self->batch_.emplace_back(p, p + size);
    return 0;
  }

  Napi::Value Lost(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(lost_.load())); }
  Napi::Value Delivered(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(delivered_)); }

  struct ring_buffer* rb_ = nullptr;
  Batch batch_;  // worker thread only
  std::atomic<uint32_t> pending_{0};
  uint32_t max_pending_ = 1024;
  std::atomic<uint64_t> lost_{0};
  uint64_t delivered_ = 0;  // JS thread only
};

}  // namespace

void InitRingBuf(Napi::Env env, Napi::Object exports) { exports.Set("RingBufferReader", RingBufferReader::Init(env)); }

}  // namespace meshd
