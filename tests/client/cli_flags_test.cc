#include "client/cli_flags.h"

#include <gtest/gtest.h>

namespace stepserve::client {
namespace {

struct Fixture {
  std::string target = "localhost:50051";
  int64_t n = 1;
  double rate = 0;
  bool stream = false;
  FlagSet flags{"test"};
  Fixture() {
    flags.AddString("target", &target, "t");
    flags.AddInt("n", &n, "n");
    flags.AddDouble("rate", &rate, "r");
    flags.AddBool("stream", &stream, "s");
  }
};

TEST(CliFlagsTest, ParsesAllFormsAndKeepsPositionals) {
  Fixture f;
  auto err = f.flags.Parse({"generate", "--target=h:1", "-n", "7", "--rate", "2.5", "--stream", "x"});
  ASSERT_FALSE(err.has_value()) << *err;
  EXPECT_EQ(f.target, "h:1");
  EXPECT_EQ(f.n, 7);
  EXPECT_DOUBLE_EQ(f.rate, 2.5);
  EXPECT_TRUE(f.stream);
  EXPECT_EQ(f.flags.positional(), (std::vector<std::string>{"generate", "x"}));
  EXPECT_TRUE(f.flags.IsSet("n"));
  EXPECT_FALSE(f.flags.help_requested());
}

TEST(CliFlagsTest, DefaultsStayWhenAbsent) {
  Fixture f;
  ASSERT_FALSE(f.flags.Parse({}).has_value());
  EXPECT_EQ(f.target, "localhost:50051");
  EXPECT_EQ(f.n, 1);
  EXPECT_FALSE(f.flags.IsSet("target"));
}

TEST(CliFlagsTest, BooleanForms) {
  Fixture f;
  ASSERT_FALSE(f.flags.Parse({"--stream=true", "--nostream"}).has_value());
  EXPECT_FALSE(f.stream);
  ASSERT_FALSE(f.flags.Parse({"--stream=1"}).has_value());
  EXPECT_TRUE(f.stream);
  EXPECT_TRUE(f.flags.Parse({"--stream=maybe"}).has_value());
}

TEST(CliFlagsTest, RejectsUnknownFlagsAndBadValues) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--bogus"}, {"--n=abc"}, {"--n=1.5"}, {"--n="}, {"--rate=x"},
                                             {"--rate=nan"}, {"--n"}, {"--nobogus"}, {"--notarget"}}) {
    Fixture f;
    auto err = f.flags.Parse(args);
    EXPECT_TRUE(err.has_value()) << args[0];
  }
  Fixture f;
  auto err = f.flags.Parse({"--bogus=1"});
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find("--bogus"), std::string::npos) << *err;
}

TEST(CliFlagsTest, HelpAndDoubleDash) {
  Fixture f;
  ASSERT_FALSE(f.flags.Parse({"--help", "--", "--n=3"}).has_value());
  EXPECT_TRUE(f.flags.help_requested());
  EXPECT_EQ(f.n, 1);
  EXPECT_EQ(f.flags.positional(), std::vector<std::string>{"--n=3"});
  EXPECT_NE(f.flags.Usage().find("--target"), std::string::npos);
}

}  // namespace
}  // namespace stepserve::client
