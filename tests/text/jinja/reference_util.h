// Runs @huggingface/jinja (node) over template cases for the reference tests.
#ifndef STEPSERVE_TESTS_TEXT_JINJA_REFERENCE_UTIL_H_
#define STEPSERVE_TESTS_TEXT_JINJA_REFERENCE_UTIL_H_

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "nlohmann/json.hpp"

namespace stepserve::text::testing {

struct ReferenceCase {
  std::string label;
  std::string source;
  nlohmann::ordered_json context;
};

struct ReferenceResult {
  bool ok = false;
  std::string output;  // or the error message
};

inline std::string ToolsDir() { return STEPSERVE_TEXT_TOOLS_DIR; }

// Fails the test (and returns false) when the npm reference tools are not installed.
inline bool ReferenceToolsInstalled() {
  std::ifstream probe(ToolsDir() + "/node_modules/@huggingface/jinja/package.json");
  if (!probe.good()) {
    ADD_FAILURE() << "the @huggingface/jinja reference is not installed under " << ToolsDir()
                  << "/node_modules: run scripts/install-text-test-tools.sh (npm ci --prefix tests/text/tools)";
    return false;
  }
  if (std::system("node --version > /dev/null 2>&1") != 0) {
    ADD_FAILURE() << "node is not on PATH; the reference tests need Node.js (see scripts/install-text-test-tools.sh)";
    return false;
  }
  return true;
}

// Renders every case with @huggingface/jinja; an empty vector (with a test failure) on a harness error.
inline std::vector<ReferenceResult> RenderReference(const std::vector<ReferenceCase>& cases) {
  nlohmann::ordered_json input = nlohmann::ordered_json::array();
  for (const auto& c : cases) input.push_back({{"template", c.source}, {"context", c.context}});
  char path[] = "/tmp/jinja_reference_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) {
    ADD_FAILURE() << "mkstemp failed";
    return {};
  }
  std::string data = input.dump();
  bool wrote = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  close(fd);
  if (!wrote) {
    ADD_FAILURE() << "writing the reference cases failed";
    unlink(path);
    return {};
  }
  std::string command = "node '" STEPSERVE_JINJA_REFERENCE_SCRIPT "' '" + ToolsDir() + "' '" + path + "'";
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  if (pipe != nullptr) {
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  }
  int rc = pipe != nullptr ? pclose(pipe) : -1;
  unlink(path);
  if (rc != 0) {
    ADD_FAILURE() << "node reference renderer failed (exit " << rc << "): " << command;
    return {};
  }
  auto parsed = nlohmann::json::parse(out, nullptr, false);
  if (!parsed.is_array() || parsed.size() != cases.size()) {
    ADD_FAILURE() << "unexpected reference output: " << out.substr(0, 500);
    return {};
  }
  std::vector<ReferenceResult> results;
  for (const auto& r : parsed) {
    ReferenceResult result;
    result.ok = r.value("ok", false);
    result.output = result.ok ? r.value("output", "") : r.value("error", "");
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace stepserve::text::testing

#endif  // STEPSERVE_TESTS_TEXT_JINJA_REFERENCE_UTIL_H_
