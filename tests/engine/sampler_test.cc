// Sampling: greedy, penalties, top-k/top-p/min-p truncation, seeded determinism, log-probabilities.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "engine/sampler.h"

namespace stepserve {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.5f, -1.0f, 0.0f};

int32_t Sample(const SamplingParams& p, const TokenHistory& h = {}, uint64_t seed = 1, int64_t index = 0) {
  return SampleToken(kLogits.data(), 5, p, h, seed, index, 0).token;
}

TEST(SamplerTest, GreedyTakesTheArgmax) { EXPECT_EQ(Sample({}), 1); }

TEST(SamplerTest, RepetitionPresenceAndFrequencyPenalties) {
  TokenHistory h;
  h.generated_counts[1] = 2;
  SamplingParams rep;
  rep.repetition_penalty = 2.0f;  // 3.0 -> 1.5 < 2.5
  EXPECT_EQ(Sample(rep, h), 2);
  SamplingParams freq;
  freq.frequency_penalty = 0.4f;  // 3.0 - 0.8 = 2.2 < 2.5
  EXPECT_EQ(Sample(freq, h), 2);
  SamplingParams pres;
  pres.presence_penalty = 0.4f;  // 3.0 - 0.4 = 2.6 > 2.5
  EXPECT_EQ(Sample(pres, h), 1);
  TokenHistory prompt_only;
  prompt_only.prompt_counts[1] = 1;
  EXPECT_EQ(Sample(freq, prompt_only), 1);  // frequency penalty ignores the prompt
  EXPECT_EQ(Sample(rep, prompt_only), 2);   // repetition penalty does not
}

TEST(SamplerTest, TruncationsReduceToGreedy) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 1;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(Sample(p, {}, 7, i), 1);
  p.top_k = 0;
  p.top_p = 0.01f;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(Sample(p, {}, 7, i), 1);
  p.top_p = 1.0f;
  p.min_p = 1.0f;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(Sample(p, {}, 7, i), 1);
}

TEST(SamplerTest, TopKTwoOnlyEverPicksTheTwoBest) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  std::map<int32_t, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[Sample(p, {}, 3, i)];
  EXPECT_EQ(seen.size(), 2u);
  // Expected share of token 1: e^3 / (e^3 + e^2.5) = 0.622.
  EXPECT_NEAR(seen[1] / 2000.0, 0.622, 0.04);
}

TEST(SamplerTest, FullDistributionFrequenciesMatchSoftmax) {
  SamplingParams p;
  p.temperature = 1.0f;
  std::vector<int> counts(5);
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[Sample(p, {}, 11, i)];
  double z = 0;
  for (float l : kLogits) z += std::exp(l);
  for (int t = 0; t < 5; ++t) EXPECT_NEAR(counts[t] / double(n), std::exp(kLogits[t]) / z, 0.015) << t;
}

TEST(SamplerTest, SeededDrawsAreReproducibleAndSeedDependent) {
  SamplingParams p;
  p.temperature = 2.0f;
  std::vector<int32_t> a, b, c;
  for (int i = 0; i < 64; ++i) {
    a.push_back(Sample(p, {}, 42, i));
    b.push_back(Sample(p, {}, 42, i));
    c.push_back(Sample(p, {}, 43, i));
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (uint64_t i = 0; i < 1000; ++i) {
    const double u = CounterUniform(5, i);
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
  }
}

TEST(SamplerTest, LogprobsOfTheRawDistribution) {
  SampleResult r = SampleToken(kLogits.data(), 5, SamplingParams{}, {}, 0, 0, 3);
  double z = 0;
  for (float l : kLogits) z += std::exp(l);
  EXPECT_EQ(r.logprob.token, 1);
  EXPECT_NEAR(r.logprob.logprob, 3.0 - std::log(z), 1e-5);
  ASSERT_EQ(r.logprob.top.size(), 3u);
  EXPECT_EQ(r.logprob.top[0].first, 1);
  EXPECT_EQ(r.logprob.top[1].first, 2);
  EXPECT_EQ(r.logprob.top[2].first, 0);
}

}  // namespace
}  // namespace stepserve
