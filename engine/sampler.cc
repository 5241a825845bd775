#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace stepserve {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void ApplyPenalties(std::vector<float>& l, const SamplingParams& p, const TokenHistory& h) {
  const int vocab = static_cast<int>(l.size());
  if (p.repetition_penalty != 1.0f) {
    auto penalise = [&](int32_t t) {
      if (t < 0 || t >= vocab) return;
      l[t] = l[t] > 0 ? l[t] / p.repetition_penalty : l[t] * p.repetition_penalty;
    };
    for (const auto& [t, c] : h.prompt_counts) penalise(t);
    for (const auto& [t, c] : h.generated_counts) {
      if (!h.prompt_counts.count(t)) penalise(t);
    }
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    for (const auto& [t, c] : h.generated_counts) {
      if (t < 0 || t >= vocab) continue;
      l[t] -= p.frequency_penalty * static_cast<float>(c) + p.presence_penalty;
    }
  }
}

int32_t ArgMax(const std::vector<float>& l) {
  return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
}

}  // namespace

double CounterUniform(uint64_t seed, uint64_t index) {
  const uint64_t bits = SplitMix64(SplitMix64(seed) ^ (index * 0xd1b54a32d192ed03ull));
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

SampleResult SampleToken(const float* logits, int vocab, const SamplingParams& params, const TokenHistory& history,
                         uint64_t seed, int64_t draw_index, int num_logprobs) {
  std::vector<float> l(logits, logits + vocab);
  ApplyPenalties(l, params, history);
  SampleResult result;
  if (params.temperature <= 0.0f) {
    result.token = ArgMax(l);
  } else {
    // Candidates sorted by logit (descending), then cut by top-k, top-p and min-p.
    std::vector<int32_t> order(vocab);
    std::iota(order.begin(), order.end(), 0);
    int keep = vocab;
    if (params.top_k > 0 && params.top_k < vocab) keep = params.top_k;
    std::partial_sort(order.begin(), order.begin() + keep, order.end(),
                      [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    order.resize(keep);
    const double inv_t = 1.0 / params.temperature;
    const double top = l[order[0]];
    std::vector<double> probs(keep);
    double sum = 0;
    for (int i = 0; i < keep; ++i) sum += probs[i] = std::exp((l[order[i]] - top) * inv_t);
    for (double& p : probs) p /= sum;
    if (params.top_p < 1.0f) {
      double cum = 0;
      int cut = keep;
      for (int i = 0; i < keep; ++i) {
        cum += probs[i];
        if (cum >= params.top_p) {
          cut = i + 1;
          break;
        }
      }
      keep = cut;
    }
    if (params.min_p > 0.0f) {
      const double threshold = params.min_p * probs[0];
      int cut = 1;
      while (cut < keep && probs[cut] >= threshold) ++cut;
      keep = cut;
    }
    double kept = 0;
    for (int i = 0; i < keep; ++i) kept += probs[i];
    const double u = CounterUniform(seed, static_cast<uint64_t>(draw_index)) * kept;
    double cum = 0;
    result.token = order[keep - 1];
    for (int i = 0; i < keep; ++i) {
      cum += probs[i];
      if (u < cum) {
        result.token = order[i];
        break;
      }
    }
  }
  if (num_logprobs > 0) {
    // Log-probabilities of the model's distribution (raw logits, before penalties and temperature).
    double max = *std::max_element(logits, logits + vocab);
    double sum = 0;
    for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
    const double log_z = max + std::log(sum);
    result.logprob.token = result.token;
    result.logprob.logprob = static_cast<float>(logits[result.token] - log_z);
    const int n = std::min(num_logprobs, vocab);
    std::vector<int32_t> idx(vocab);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + n, idx.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    for (int i = 0; i < n; ++i) result.logprob.top.push_back({idx[i], static_cast<float>(logits[idx[i]] - log_z)});
  }
  return result;
}

}  // namespace stepserve
