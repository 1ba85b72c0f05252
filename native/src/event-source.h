// JsEventSource: the part RingBufferReader (ringbuf.cc) and AddressWatcher
// (netlink.cc) share — a kernel fd watched off the event loop, its records
// handed to a JavaScript callback.
//
// A worker thread sleeps in epoll_wait on the source fd and an eventfd that
// close() signals; each time the source is readable it calls the subclass's
// Drain(), which reads what is there and passes batches to Deliver(). The
// thread never blocks on JS: Deliver() queues a non-blocking call of the
// ThreadSafeFunction. close() wakes the thread, joins it and releases the
// callback; it is idempotent, and batches still queued for the JS thread are
// dropped. The object stays alive until close() (a persistent reference), so
// a forgotten close() keeps the process alive rather than losing events.
//
// A subclass (CRTP, these members public): calls Start(info, onEvents, name,
// fd) at the end of its constructor; implements Drain() (worker thread),
// ToJs(env, batch) (JS thread) and OnClosed() (frees its own resources, on the
// JS thread once the worker has stopped; idempotent); may implement
// Arrived(batch), called on the JS thread for every batch even after close();
// and calls Shutdown() first in its destructor.
#pragma once
#include <napi.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <atomic>
#include <cerrno>
#include <memory>
#include <thread>

#include "errors.h"

namespace meshd {

template <typename T, typename Batch>
class JsEventSource : public Napi::ObjectWrap<T> {
 public:
  explicit JsEventSource(const Napi::CallbackInfo& info) : Napi::ObjectWrap<T>(info) {}

  ~JsEventSource() override { Shutdown(); }

  void Arrived(const Batch&) {}

 protected:
  // Stops the worker if it runs and closes the epoll fd and the eventfd; idempotent.
  void Shutdown() {
    if (open_) Stop();
    CloseFds();
  }

  // close(), ref(), unref() for DefineClass, plus the subclass's own methods.
  static Napi::Function DefineWith(Napi::Env env, const char* name, std::vector<typename Napi::ObjectWrap<T>::PropertyDescriptor> extra) {
    extra.push_back(Napi::ObjectWrap<T>::InstanceMethod("close", &JsEventSource::Close));
    extra.push_back(Napi::ObjectWrap<T>::InstanceMethod("unref", &JsEventSource::Unref));
    extra.push_back(Napi::ObjectWrap<T>::InstanceMethod("ref", &JsEventSource::Ref));
    return Napi::ObjectWrap<T>::DefineClass(env, name, extra);
  }

  // Starts the worker on `source_fd` (owned by the subclass). Throws (after OnClosed()) on failure.
  void Start(const Napi::CallbackInfo& info, Napi::Function on_events, const char* name, int source_fd) {
    Napi::Env env = info.Env();
    wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.u32 = 0;
    bool ok = wake_ >= 0 && epfd_ >= 0 && epoll_ctl(epfd_, EPOLL_CTL_ADD, source_fd, &ev) == 0;
    ev.data.u32 = 1;
    ok = ok && epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_, &ev) == 0;
    if (!ok) {
      int err = errno;
      CloseFds();
      static_cast<T*>(this)->OnClosed();
      Throw(env, Failure{err, std::string("eventfd/epoll for ") + name, ""});
    }
    tsfn_ = Napi::ThreadSafeFunction::New(env, on_events, name, 0, 1);
    self_ = Napi::Persistent(info.This().As<Napi::Object>());  // alive until close()
    open_ = true;
    thread_ = std::thread([this] { Run(); });
  }

  // Worker thread: hands a batch to the JS thread; false (batch dropped) when the call cannot be queued.
  bool Deliver(std::unique_ptr<Batch> batch) {
    Batch* out = batch.release();
    napi_status st = tsfn_.NonBlockingCall(out, [this](Napi::Env env, Napi::Function cb, Batch* b) {
      std::unique_ptr<Batch> owned(b);
      static_cast<T*>(this)->Arrived(*owned);
      if (!open_ || env == nullptr) return;
      cb.Call({static_cast<T*>(this)->ToJs(env, *owned)});
    });
    if (st == napi_ok) return true;
    delete out;
    return false;
  }

 private:
  void Run() {
    struct epoll_event evs[2];
    for (;;) {
      int n = epoll_wait(epfd_, evs, 2, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      bool stop = false;
      for (int i = 0; i < n; i++) stop = stop || evs[i].data.u32 == 1;
      if (stop || stopping_.load()) break;
      static_cast<T*>(this)->Drain();
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

  void CloseFds() {
    for (int* fd : {&wake_, &epfd_}) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (open_) {
      Stop();
      CloseFds();
      static_cast<T*>(this)->OnClosed();
      self_.Reset();
    }
    return info.Env().Undefined();
  }
  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (open_) tsfn_.Unref(info.Env());
    return info.Env().Undefined();
  }
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (open_) tsfn_.Ref(info.Env());
    return info.Env().Undefined();
  }

  int wake_ = -1;
  int epfd_ = -1;
  std::thread thread_;
  Napi::ThreadSafeFunction tsfn_;
  Napi::ObjectReference self_;
  std::atomic<bool> stopping_{false};

 protected:
  bool open_ = false;  // JS thread only
};

}  // namespace meshd
