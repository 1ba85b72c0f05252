// RingBufferReader: events from a BPF_MAP_TYPE_RINGBUF map delivered to a
// JavaScript callback without blocking the event loop.
//
// A worker thread sleeps in epoll_wait on two fds: libbpf's ring-buffer epoll
// fd (readable when the kernel committed records) and an eventfd that close()
// signals. When records are there it drains them with ring_buffer__consume,
// copies them (the ring's memory is reused as soon as the callback returns) and
// hands the batch to the JS thread through a ThreadSafeFunction, which calls
// `onEvents(buffers: Buffer[])`. The thread never blocks on JS: if more than
// `maxPending` batches are waiting for the JS thread, new records are counted
// as lost instead (lost()).
//
// close() wakes the thread, joins it and releases the callback; it is
// idempotent, and events still queued for the JS thread are dropped.
#include "ringbuf.h"

#include <bpf/libbpf.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <atomic>
#include <cerrno>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "errors.h"

namespace meshd {
namespace {

using Batch = std::vector<std::vector<uint8_t>>;

class RingBufferReader : public Napi::ObjectWrap<RingBufferReader> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "RingBufferReader",
                       {
                           InstanceMethod<&RingBufferReader::Close>("close"),
                           InstanceMethod<&RingBufferReader::Lost>("lost"),
                           InstanceMethod<&RingBufferReader::Delivered>("delivered"),
                           InstanceMethod<&RingBufferReader::Unref>("unref"),
                           InstanceMethod<&RingBufferReader::Ref>("ref"),
                       });
  }

  // new RingBufferReader(mapFd, onEvents, { maxPending = 1024 })
  explicit RingBufferReader(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RingBufferReader>(info) {
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
    wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (wake_ < 0 || epfd_ < 0) {
      int err = errno;
      Cleanup();
      Throw(env, Failure{err, "eventfd/epoll_create1", ""});
    }
    struct epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.u32 = 0;
    int r1 = epoll_ctl(epfd_, EPOLL_CTL_ADD, ring_buffer__epoll_fd(rb_), &ev);
    ev.data.u32 = 1;
    int r2 = r1 < 0 ? -1 : epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_, &ev);
    if (r1 < 0 || r2 < 0) {
      int err = errno;
      Cleanup();
      Throw(env, Failure{err, "epoll_ctl", ""});
    }
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "meshd:ringbuf", 0, 1);
    self_ = Napi::Persistent(info.This().As<Napi::Object>());  // alive until close()
    open_ = true;
    thread_ = std::thread([this] { Run(); });
  }

  ~RingBufferReader() override {
    if (open_) Stop();
    Cleanup();
  }

 private:
  static int OnSample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<RingBufferReader*>(ctx);
    const auto* p = static_cast<const uint8_t*>(data);
    self->batch_.emplace_back(p, p + size);
    return 0;
  }

  void Run() {
    struct epoll_event evs[2];
    for (;;) {
      int n = epoll_wait(epfd_, evs, 2, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      bool stop = false;
      for (int i = 0; i < n; i++) {
        if (evs[i].data.u32 == 1) stop = true;
      }
      if (stop || stopping_.load()) break;
      batch_.clear();
      if (ring_buffer__consume(rb_) < 0) continue;
      if (batch_.empty()) continue;
      if (pending_.load() >= max_pending_) {
        lost_ += batch_.size();
        continue;
      }
      auto* out = new Batch(std::move(batch_));
      batch_ = Batch();
      pending_++;
      napi_status st = tsfn_.NonBlockingCall(out, [this](Napi::Env env, Napi::Function cb, Batch* b) {
        std::unique_ptr<Batch> owned(b);
        pending_--;
        if (!open_ || env == nullptr) return;
        Napi::Array arr = Napi::Array::New(env, owned->size());
        for (size_t i = 0; i < owned->size(); i++) {
          const auto& rec = (*owned)[i];
          arr.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, rec.data(), rec.size()));
        }
        delivered_ += owned->size();
        cb.Call({arr});
      });
      if (st != napi_ok) {
        pending_--;
        lost_ += out->size();
        delete out;
      }
    }
  }

  void Stop() {
    open_ = false;
    stopping_ = true;
    uint64_t one = 1;
    if (write(wake_, &one, sizeof(one)) < 0) {
      // The eventfd cannot be full after one write; nothing else to do.
    }
    if (thread_.joinable()) thread_.join();
    tsfn_.Release();
  }

  void Cleanup() {
    if (rb_) ring_buffer__free(rb_);
    rb_ = nullptr;
    if (wake_ >= 0) close(wake_);
    wake_ = -1;
    if (epfd_ >= 0) close(epfd_);
    epfd_ = -1;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (open_) {
      Stop();
      Cleanup();
      self_.Reset();
    }
    return info.Env().Undefined();
  }
  Napi::Value Lost(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(lost_.load())); }
  Napi::Value Delivered(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(delivered_)); }
  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (open_) tsfn_.Unref(info.Env());
    return info.Env().Undefined();
  }
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (open_) tsfn_.Ref(info.Env());
    return info.Env().Undefined();
  }

  struct ring_buffer* rb_ = nullptr;
  int wake_ = -1;
  int epfd_ = -1;
  std::thread thread_;
  Napi::ThreadSafeFunction tsfn_;
  Napi::ObjectReference self_;
  Batch batch_;  // worker thread only
  std::atomic<bool> stopping_{false};
  bool open_ = false;  // JS thread only
  std::atomic<uint32_t> pending_{0};
  uint32_t max_pending_ = 1024;
  std::atomic<uint64_t> lost_{0};
  uint64_t delivered_ = 0;  // JS thread only
};

}  // namespace

void InitRingBuf(Napi::Env env, Napi::Object exports) { exports.Set("RingBufferReader", RingBufferReader::Init(env)); }

}  // namespace meshd
