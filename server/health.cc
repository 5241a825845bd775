#include "server/health.h"

#include <condition_variable>
#include <optional>

namespace stepserve::server {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch stream: writes the current status, then every change (only the latest pending one when the
// client is slow). Deletes itself in OnDone; the service unregisters it first, under the service lock.
class HealthService::WatchReactor final : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  WatchReactor(HealthService* service, std::string name) : service_(service), name_(std::move(name)) {}

  // Called with the service lock held.
  void Notify(ServingStatus status) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    if (last_sent_ == status && !writing_) return;
    pending_ = status;
    MaybeWriteLocked();
  }

  // Called with the service lock held: finish after the pending write.
  void End(const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    end_ = status;
    MaybeWriteLocked();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    MaybeWriteLocked();
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (!writing_) FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    service_->Unregister(this);
    delete this;
  }

 private:
  void MaybeWriteLocked() {
    if (finished_ || writing_) return;
    if (cancelled_) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
      return;
    }
    if (pending_.has_value() && *pending_ != last_sent_) {
      response_.set_status(*pending_);
      last_sent_ = *pending_;
      pending_.reset();
      writing_ = true;
      StartWrite(&response_);
      return;
    }
    pending_.reset();
    if (end_.has_value()) FinishLocked(*end_);
  }

  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  HealthService* const service_;
  const std::string name_;
  std::mutex mu_;
  HealthCheckResponse response_;
  std::optional<ServingStatus> pending_;
  ServingStatus last_sent_ = HealthCheckResponse::UNKNOWN;
  std::optional<grpc::Status> end_;
  bool writing_ = false;
  bool cancelled_ = false;
  bool finished_ = false;

  friend class HealthService;
};

HealthService::~HealthService() = default;

HealthService::ServingStatus HealthService::StatusLocked(const std::string& service) const {
  auto it = statuses_.find(service);
  return it == statuses_.end() ? HealthCheckResponse::SERVICE_UNKNOWN : it->second;
}

HealthService::ServingStatus HealthService::GetStatus(const std::string& service) const {
  std::lock_guard<std::mutex> lock(mu_);
  return StatusLocked(service);
}

void HealthService::SetStatus(const std::string& service, ServingStatus status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutdown_) return;
  statuses_[service] = status;
  for (WatchReactor* w : watchers_) {
    if (w->name_ == service) w->Notify(status);
  }
}

void HealthService::SetAll(ServingStatus status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutdown_) return;
  for (auto& [name, s] : statuses_) s = status;
  for (WatchReactor* w : watchers_) w->Notify(StatusLocked(w->name_));
}

void HealthService::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutdown_) return;
  for (auto& [name, s] : statuses_) s = HealthCheckResponse::NOT_SERVING;
  for (WatchReactor* w : watchers_) {
    w->Notify(StatusLocked(w->name_));
    w->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"));
  }
  shutdown_ = true;
}

void HealthService::Unregister(WatchReactor* watcher) {
  std::lock_guard<std::mutex> lock(mu_);
  watchers_.erase(watcher);
}

grpc::ServerUnaryReactor* HealthService::Check(grpc::CallbackServerContext* context,
                                               const HealthCheckRequest* request, HealthCheckResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const ServingStatus status = GetStatus(request->service());
  if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service: " + request->service()));
  } else {
    response->set_status(status);
    reactor->Finish(grpc::Status::OK);
  }
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(grpc::CallbackServerContext* context,
                                                                    const HealthCheckRequest* request) {
  auto* reactor = new WatchReactor(this, request->service());
  std::lock_guard<std::mutex> lock(mu_);
  if (shutdown_) {
    reactor->Notify(HealthCheckResponse::NOT_SERVING);
    reactor->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"));
    // Not registered: OnDone's Unregister is a no-op.
    return reactor;
  }
  watchers_.insert(reactor);
  reactor->Notify(StatusLocked(request->service()));
  return reactor;
}

}  // namespace stepserve::server
