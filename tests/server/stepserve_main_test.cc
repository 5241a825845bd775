// The stepserve program as a subprocess: flags, start-up log, health, serving, SIGTERM drain, exit code.
#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/server/child_process.h"
#include "tests/server/server_test_util.h"
#include "tests/test_util.h"

namespace stepserve::testing {
namespace {

TEST(StepserveMainTest, ServesTheTinyCheckpointAndDrainsOnSigterm) {
  Child child({STEPSERVE_BIN, "--host=127.0.0.1", "--port=0", "--metrics_port=0", "--http_port=0", "--device=cpu",
               "--model=" + TinyCheckpointDir(), "--kv_cache_bytes=16777216", "--drain_timeout_s=60"});
  int port = 0;
  ASSERT_TRUE(WaitFor([&] { return (port = ParsePort(child.output())) > 0; }, absl::Seconds(60)))
      << child.output();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  ASSERT_TRUE(WaitFor(
      [&] {
        grpc::ClientContext context;
        context.set_deadline(DeadlineIn(absl::Seconds(5)));
        grpc::health::v1::HealthCheckRequest request;
        grpc::health::v1::HealthCheckResponse response;
        return health->Check(&context, request, &response).ok() &&
               response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
      },
      absl::Seconds(120)))
      << child.output();
  EXPECT_TRUE(absl::StrContains(child.output(), "KV cache")) << child.output();

  auto stub = v1::StepServe::NewStub(channel);
  const GreedyCase& c = Greedy()[0];
  GenerateResult result = RunGenerate(stub.get(), GreedyRequest(c.prompt, 20));
  ASSERT_TRUE(result.status.ok()) << result.status.error_message() << "\n" << child.output();
  EXPECT_EQ(result.tokens, c.greedy);

  // A refused request is logged with its reason.
  GenerateResult refused = RunGenerate(stub.get(), GreedyRequest({}, 4));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // SIGTERM with a request in flight: it completes, then the program exits with 0.
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(120)));
  auto reader = stub->Generate(&context, GreedyRequest(Greedy()[1].prompt, 300));
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  size_t tokens = response.token_ids_size();
  child.Signal(SIGTERM);
  while (reader->Read(&response)) tokens += response.token_ids_size();
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message() << "\n" << child.output();
  EXPECT_EQ(tokens, 300u);
  EXPECT_EQ(response.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(child.WaitExit(absl::Seconds(90)), 0) << child.output();
  const std::string log = child.output();
  EXPECT_TRUE(absl::StrContains(log, "refused request")) << log;
  EXPECT_TRUE(absl::StrContains(log, "prompt_token_ids")) << log;
  EXPECT_TRUE(absl::StrContains(log, "SIGTERM")) << log;
  EXPECT_TRUE(absl::StrContains(log, "draining")) << log;
}

TEST(StepserveMainTest, BadFlagsExitWithAnError) {
  Child child({STEPSERVE_BIN, "--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--http_port=0", "--device=tpu"});
  EXPECT_EQ(child.WaitExit(absl::Seconds(60)), 2) << child.output();
  EXPECT_TRUE(absl::StrContains(child.output(), "--device")) << child.output();
  Child tls({STEPSERVE_BIN, "--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--http_port=0", "--tls_cert=/nonexistent.pem",
             "--tls_key=/nonexistent.key", "--model=" + TinyCheckpointDir()});
  EXPECT_EQ(tls.WaitExit(absl::Seconds(60)), 1) << tls.output();
  EXPECT_TRUE(absl::StrContains(tls.output(), "--tls_cert")) << tls.output();
}

// A checkpoint whose model.safetensors is a symlink loop: a clear error and exit code 1, not an uncaught
// std::filesystem::filesystem_error (abort, exit 134).
TEST(StepserveMainTest, SymlinkLoopCheckpointExitsWithAClearError) {
  const std::string dir = MakeTempDir("main-symlinkloop");
  std::filesystem::copy_file(TinyCheckpointDir() + "/config.json", dir + "/config.json");
  std::filesystem::create_symlink("model.safetensors", dir + "/model.safetensors");
  Child child({STEPSERVE_BIN, "--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--http_port=0", "--device=cpu",
               "--model=" + dir});
  EXPECT_EQ(child.WaitExit(absl::Seconds(60)), 1) << child.output();
  EXPECT_TRUE(absl::StrContains(child.output(), "cannot load model")) << child.output();
  EXPECT_TRUE(absl::StrContains(child.output(), dir + "/model.safetensors")) << child.output();
}

}  // namespace
}  // namespace stepserve::testing
