// server/api_keys.h: Bearer parsing, several keys, the key file re-read on Reload (SIGHUP) and when it
// changes, errors that never quote a key.
#include "server/api_keys.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "tests/test_util.h"

namespace stepserve::testing {
namespace {

using server::ApiKeys;

void WriteFile(const std::string& path, const std::string& text) {
  // Written beside and renamed: a new inode, as a Kubernetes Secret volume swaps its files.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
  }
  std::filesystem::rename(tmp, path);
}

TEST(ApiKeysTest, DisabledWithoutKeys) {
  auto keys = ApiKeys::Create({}, "");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_FALSE((*keys)->enabled());
  EXPECT_TRUE((*keys)->Check(""));
  std::string caller = "x";
  EXPECT_TRUE((*keys)->Check("Bearer whatever", &caller));
  EXPECT_EQ(caller, "");
}

TEST(ApiKeysTest, FlagKeysBearerSchemeAndCallerIdentity) {
  auto keys = ApiKeys::Create({"alpha-1,beta-2", "gamma-3"}, "");
  ASSERT_TRUE(keys.ok()) << keys.status();
  const ApiKeys& k = **keys;
  EXPECT_TRUE(k.enabled());
  EXPECT_EQ(k.num_keys(), 3);
  EXPECT_TRUE(k.Check("Bearer alpha-1"));
  EXPECT_TRUE(k.Check("bearer beta-2"));
  EXPECT_TRUE(k.Check("BEARER   gamma-3  "));
  EXPECT_FALSE(k.Check(""));
  EXPECT_FALSE(k.Check("alpha-1"));           // no scheme
  EXPECT_FALSE(k.Check("Basic alpha-1"));     // another scheme
  EXPECT_FALSE(k.Check("Bearer alpha-"));     // a prefix of a key
  EXPECT_FALSE(k.Check("Bearer alpha-12"));   // a key and more
  EXPECT_FALSE(k.Check("Bearer "));
  EXPECT_FALSE(k.Check("Bearer alpha-1,beta-2"));
  std::string a, a2, b;
  ASSERT_TRUE(k.Check("Bearer alpha-1", &a));
  ASSERT_TRUE(k.Check("Bearer alpha-1", &a2));
  ASSERT_TRUE(k.Check("Bearer beta-2", &b));
  EXPECT_TRUE(absl::StartsWith(a, "key:")) << a;
  EXPECT_EQ(a, a2);
  EXPECT_NE(a, b);
  EXPECT_FALSE(absl::StrContains(a, "alpha")) << a;
}

TEST(ApiKeysTest, BadKeysAreRefusedWithoutQuotingThem) {
  auto spaced = ApiKeys::Create({"secret with-space"}, "");
  ASSERT_FALSE(spaced.ok());
  EXPECT_FALSE(absl::StrContains(spaced.status().message(), "secret")) << spaced.status();
  const std::string dir = MakeTempDir("apikeys-bad");
  WriteFile(dir + "/keys", "good-key\n\x01secret-ctl\n");
  auto control = ApiKeys::Create({}, dir + "/keys");
  ASSERT_FALSE(control.ok());
  EXPECT_TRUE(absl::StrContains(control.status().message(), "line 2")) << control.status();
  EXPECT_FALSE(absl::StrContains(control.status().message(), "secret")) << control.status();
  EXPECT_FALSE(ApiKeys::Create({}, dir + "/missing").ok());
  EXPECT_FALSE(ApiKeys::Create({}, dir).ok());  // a directory
  WriteFile(dir + "/empty", "# no key yet\n\n");
  EXPECT_FALSE(ApiKeys::Create({}, dir + "/empty").ok());
  EXPECT_TRUE(ApiKeys::Create({"flag-key"}, dir + "/empty").ok());
}

TEST(ApiKeysTest, KeyFileRotationOnReloadAndOnChange) {
  const std::string dir = MakeTempDir("apikeys-rotate");
  const std::string path = dir + "/keys";
  WriteFile(path, "# rotated keys\nold-key\n");
  auto created = ApiKeys::Create({"flag-key"}, path);
  ASSERT_TRUE(created.ok()) << created.status();
  ApiKeys& keys = **created;
  keys.set_file_check_interval(absl::Hours(1));  // only Reload for now
  EXPECT_TRUE(keys.Check("Bearer old-key"));
  EXPECT_TRUE(keys.Check("Bearer flag-key"));
  EXPECT_FALSE(keys.Check("Bearer new-key"));

  // Both valid during the rotation, then the old one removed: SIGHUP's Reload.
  WriteFile(path, "old-key\nnew-key\n");
  ASSERT_TRUE(keys.Reload().ok());
  EXPECT_TRUE(keys.Check("Bearer old-key"));
  EXPECT_TRUE(keys.Check("Bearer new-key"));
  WriteFile(path, "new-key\n");
  ASSERT_TRUE(keys.Reload().ok());
  EXPECT_FALSE(keys.Check("Bearer old-key"));
  EXPECT_TRUE(keys.Check("Bearer new-key"));
  EXPECT_TRUE(keys.Check("Bearer flag-key"));  // --api_key keys stay

  // A file that cannot be read on a reload keeps the keys held before.
  std::filesystem::remove(path);
  EXPECT_FALSE(keys.Reload().ok());
  EXPECT_TRUE(keys.Check("Bearer new-key"));

  // Without a reload: a changed file is noticed by Check itself.
  keys.set_file_check_interval(absl::ZeroDuration());
  WriteFile(path, "third-key\n");
  EXPECT_TRUE(keys.Check("Bearer third-key"));
  EXPECT_FALSE(keys.Check("Bearer new-key"));
  EXPECT_EQ(keys.num_keys(), 2);
}

}  // namespace
}  // namespace stepserve::testing
