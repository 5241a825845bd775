// grpc.health.v1.Health on a real server: start-up, attach, drain; Watch under many watchers.
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include "tests/server/server_test_util.h"

namespace stepserve::testing {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

constexpr char kService[] = "stepserve.v1.StepServe";

grpc::Status Check(grpc::health::v1::Health::Stub* stub, const std::string& service,
                   HealthCheckResponse::ServingStatus* status) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(30)));
  HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  grpc::Status s = stub->Check(&context, request, &response);
  *status = response.status();
  return s;
}

HealthCheckResponse::ServingStatus CheckOk(grpc::health::v1::Health::Stub* stub, const std::string& service) {
  HealthCheckResponse::ServingStatus status = HealthCheckResponse::UNKNOWN;
  grpc::Status s = Check(stub, service, &status);
  EXPECT_TRUE(s.ok()) << service << ": " << s.error_message();
  return status;
}

struct Watcher {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> reader;

  Watcher(grpc::health::v1::Health::Stub* stub, const std::string& service) {
    context.set_deadline(DeadlineIn(absl::Seconds(60)));
    HealthCheckRequest request;
    request.set_service(service);
    reader = stub->Watch(&context, request);
  }
  // The next status, or UNKNOWN when the stream ended.
  HealthCheckResponse::ServingStatus Next() {
    HealthCheckResponse response;
    if (!reader->Read(&response)) return HealthCheckResponse::UNKNOWN;
    return response.status();
  }
};

TEST(HealthTest, NotServingUntilTheModelIsAttachedThenServingThenNotServingWhileDraining) {
  TestServerOptions options;
  options.attach_executor = false;
  TestServer server(options);
  auto health = server.health_stub();
  auto stub = server.stub();

  EXPECT_EQ(CheckOk(health.get(), ""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(CheckOk(health.get(), kService), HealthCheckResponse::NOT_SERVING);
  HealthCheckResponse::ServingStatus ignored;
  EXPECT_EQ(Check(health.get(), "no.such.Service", &ignored).error_code(), grpc::StatusCode::NOT_FOUND);

  // Before the model is attached, the API answers UNAVAILABLE.
  GenerateResult early = RunGenerate(stub.get(), GreedyRequest(Greedy()[0].prompt, 4));
  EXPECT_EQ(early.status.error_code(), grpc::StatusCode::UNAVAILABLE) << early.status.error_message();
  {
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(absl::Seconds(30)));
    v1::ModelInfo info;
    EXPECT_EQ(stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }

  Watcher whole(health.get(), "");
  Watcher api(health.get(), kService);
  Watcher unknown(health.get(), "no.such.Service");
  EXPECT_EQ(whole.Next(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(api.Next(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(unknown.Next(), HealthCheckResponse::SERVICE_UNKNOWN);

  server.AttachExecutor();
  EXPECT_EQ(whole.Next(), HealthCheckResponse::SERVING);
  EXPECT_EQ(api.Next(), HealthCheckResponse::SERVING);
  EXPECT_EQ(CheckOk(health.get(), ""), HealthCheckResponse::SERVING);
  EXPECT_EQ(CheckOk(health.get(), kService), HealthCheckResponse::SERVING);
  GenerateResult served = RunGenerate(stub.get(), GreedyRequest(Greedy()[0].prompt, 4));
  EXPECT_TRUE(served.status.ok()) << served.status.error_message();

  server.server().BeginDrain();
  EXPECT_EQ(whole.Next(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(api.Next(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(CheckOk(health.get(), ""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(CheckOk(health.get(), kService), HealthCheckResponse::NOT_SERVING);
  GenerateResult refused = RunGenerate(stub.get(), GreedyRequest(Greedy()[0].prompt, 4));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);

  server.server().Drain(absl::Seconds(10));
  // The Watch streams end when the server stops.
  EXPECT_EQ(whole.Next(), HealthCheckResponse::UNKNOWN);
  EXPECT_EQ(api.Next(), HealthCheckResponse::UNKNOWN);
  EXPECT_EQ(unknown.Next(), HealthCheckResponse::UNKNOWN);
  EXPECT_EQ(whole.reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

// Many watchers while the status flips many times: every stream sees a sequence with no repeats, and
// the last status before the stream ends is NOT_SERVING (the shutdown status).
TEST(HealthTest, ManyWatchersSeeEveryChangeWithoutRepeatsUnderConcurrentUpdates) {
  TestServerOptions options;
  options.attach_executor = false;
  TestServer server(options);
  auto health = server.health_stub();
  constexpr int kWatchers = 32;
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < kWatchers; ++i) {
    watchers.push_back(std::make_unique<Watcher>(health.get(), i % 2 ? kService : ""));
  }
  for (auto& w : watchers) ASSERT_EQ(w->Next(), HealthCheckResponse::NOT_SERVING);

  std::vector<std::vector<HealthCheckResponse::ServingStatus>> seen(kWatchers);
  std::vector<std::thread> readers;
  for (int i = 0; i < kWatchers; ++i) {
    readers.emplace_back([&, i] {
      for (auto s = watchers[i]->Next(); s != HealthCheckResponse::UNKNOWN; s = watchers[i]->Next()) {
        seen[i].push_back(s);
      }
    });
  }
  std::vector<std::thread> togglers;
  for (int t = 0; t < 4; ++t) {
    togglers.emplace_back([&, t] {
      for (int k = 0; k < 200; ++k) {
        server.server().health().SetAll((k + t) % 2 ? HealthCheckResponse::SERVING
                                                    : HealthCheckResponse::NOT_SERVING);
      }
    });
  }
  for (auto& t : togglers) t.join();
  server.server().health().Shutdown();
  for (auto& r : readers) r.join();
  for (int i = 0; i < kWatchers; ++i) {
    HealthCheckResponse::ServingStatus previous = HealthCheckResponse::NOT_SERVING;
    for (auto s : seen[i]) {
      EXPECT_NE(s, previous) << "watcher " << i << " got a repeated status";
      previous = s;
    }
    EXPECT_EQ(previous, HealthCheckResponse::NOT_SERVING) << "watcher " << i;
    EXPECT_EQ(watchers[i]->reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
}

}  // namespace
}  // namespace stepserve::testing
