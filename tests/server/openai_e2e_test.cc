// End to end with a real client: the stepserve program on the tiny preset (builtin tokenizer and chat
// template), driven by the official `openai` npm package and curl (tests/server/openai_e2e.mjs). Needs node,
// curl and tests/text/tools/node_modules (scripts/install-text-test-tools.sh, which scripts/test.sh runs).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/server/child_process.h"
#include "tests/server/server_test_util.h"

namespace stepserve::testing {
namespace {

// A port nothing listens on right now (bound to 0 and released).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// The full path of a program on PATH, or "" (the spawn helper does not search PATH).
std::string Which(const std::string& program) {
  std::string path;
  if (FILE* p = popen(absl::StrCat("command -v ", program, " 2>/dev/null").c_str(), "r")) {
    char buffer[4096];
    while (fgets(buffer, sizeof(buffer), p) != nullptr) path += buffer;
    pclose(p);
  }
  while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.pop_back();
  return path;
}

TEST(OpenAiEndToEndTest, OfficialOpenAiClientAndCurlAgainstTheTinyPreset) {
  const std::string tools = absl::StrCat(STEPSERVE_SOURCE_DIR, "/tests/text/tools");
  const std::string node_bin = Which("node");
  if (node_bin.empty() || Which("curl").empty() || !std::filesystem::exists(tools + "/node_modules/openai/package.json")) {
    GTEST_SKIP() << "needs node, curl and the openai npm package: run scripts/install-text-test-tools.sh";
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int http_port = FreePort();
    Child server({STEPSERVE_BIN, "--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--device=cpu", "--model=tiny",
                  absl::StrCat("--http_port=", http_port), "--kv_cache_bytes=33554432"});
    bool ready = WaitFor(
        [&] {
          httplib::Client cli("127.0.0.1", http_port);
          cli.set_connection_timeout(1, 0);
          auto res = cli.Get("/health");
          return res && res->status == 200;
        },
        absl::Seconds(120));
    if (!ready) {
      if (server.WaitExit(absl::Seconds(1)) >= 0) continue;  // lost the port race: try another
      FAIL() << "stepserve did not become healthy:\n" << server.output();
    }
    Child node({node_bin, absl::StrCat(STEPSERVE_SOURCE_DIR, "/tests/server/openai_e2e.mjs"),
                absl::StrCat("http://127.0.0.1:", http_port), tools},
               /*capture_stdout=*/true);
    const int code = node.WaitExit(absl::Seconds(240));
    EXPECT_EQ(code, 0) << node.output() << "\n--- stepserve:\n" << server.output();
    EXPECT_NE(node.output().find("openai_e2e: all ok"), std::string::npos) << node.output();
    return;
  }
  FAIL() << "could not start stepserve on a free port";
}

}  // namespace
}  // namespace stepserve::testing
