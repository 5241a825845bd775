#include "model/causal_lm.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "model/rms_norm.h"
#include "model/status_macros.h"

namespace stepserve {

CausalLM::CausalLM(ModelConfig config, ModelWeights weights, at::Device device)
    : config_(std::move(config)), weights_(std::move(weights)), device_(device) {
  embed_ = weights_.Get("model.embed_tokens.weight");
  dtype_ = embed_.scalar_type();
  final_norm_ = weights_.Get("model.norm.weight");
  lm_head_ = config_.tie_word_embeddings ? embed_ : weights_.Get("lm_head.weight");
  for (int i = 0; i < config_.num_hidden_layers; ++i) {
    layers_.push_back(std::make_unique<DecoderLayer>(config_, i, weights_, device_));
  }
}

absl::StatusOr<StepAttentionMetadata> CausalLM::PrepareStep(const ForwardBatch& batch, PagedKvCache* cache) const {
  const int64_t total = batch.token_ids.numel();
  int64_t sum = 0;
  for (const SequenceChunk& s : batch.seqs) {
    if (s.num_tokens <= 0) return absl::InvalidArgumentError("every sequence chunk needs at least one token");
    if (s.start_pos < 0) return absl::InvalidArgumentError("start_pos must not be negative");
    if (s.kv != nullptr) {
      if (cache == nullptr) return absl::InvalidArgumentError("a chunk has a KV handle but no cache was given");
      if (s.kv->num_tokens != s.start_pos) {
        return absl::InvalidArgumentError(absl::StrCat("chunk start_pos ", s.start_pos, " does not match the ",
                                                       s.kv->num_tokens, " tokens in its KV cache"));
      }
    }
    if (s.start_pos + s.num_tokens > config_.max_position_embeddings) {
      return absl::OutOfRangeError(absl::StrCat("positions up to ", s.start_pos + s.num_tokens,
                                                " exceed max_position_embeddings ", config_.max_position_embeddings));
    }
    sum += s.num_tokens;
  }
  if (sum != total) {
    return absl::InvalidArgumentError(absl::StrCat("chunks cover ", sum, " tokens but the batch has ", total));
  }
  // Check the whole step's block demand before touching any handle, so a failure has no side effects.
  if (cache != nullptr) {
    for (AttentionKind kind : {AttentionKind::kFull, AttentionKind::kSliding}) {
      int64_t needed = 0;
      for (const SequenceChunk& s : batch.seqs) {
        // Count only growth: blocks a sequence releases may not be free yet when another one appends.
        if (s.kv != nullptr) needed += std::max(0, cache->BlocksNeeded(*s.kv, s.num_tokens, kind));
      }
      if (needed > cache->NumFreeBlocks(kind)) {
        return absl::ResourceExhaustedError("KV cache has too few free blocks for this step");
      }
    }
  }
  StepAttentionMetadata meta;
  std::vector<int64_t> positions;
  positions.reserve(total);
  int64_t row = 0;
  for (const SequenceChunk& s : batch.seqs) {
    for (int64_t i = 0; i < s.num_tokens; ++i) positions.push_back(s.start_pos + i);
    std::array<KvStepPlan, kNumAttentionKinds> plans;
    if (s.kv != nullptr) {
      ASSIGN_OR_RETURN(plans, cache->Append(*s.kv, s.num_tokens));
    }
    for (int k = 0; k < kNumAttentionKinds; ++k) {
      SeqAttention a;
      a.token_begin = row;
      a.num_tokens = s.num_tokens;
      a.start_pos = s.start_pos;
      a.cached = s.kv != nullptr;
      a.kv = plans[k];
      meta.seqs[k].push_back(std::move(a));
    }
    row += s.num_tokens;
  }
  meta.positions = at::tensor(positions, at::TensorOptions().dtype(at::kLong)).to(device_);
  return meta;
}

absl::StatusOr<at::Tensor> CausalLM::Forward(const ForwardBatch& batch, PagedKvCache* cache,
                                             const LayerObserver& observer) const {
  if (!batch.token_ids.defined() || batch.token_ids.dim() != 1) {
    return absl::InvalidArgumentError("token_ids must be a 1-D tensor");
  }
  if (batch.token_ids.numel() > 0) {
    at::Tensor ids = batch.token_ids.to(at::kCPU);
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", lo < 0 ? lo : hi, " is outside the vocabulary [0, ",
                                                     config_.vocab_size, ")"));
    }
  }
  ASSIGN_OR_RETURN(StepAttentionMetadata meta, PrepareStep(batch, cache));
  at::Tensor tokens = batch.token_ids.to(device_, at::kLong);
  at::Tensor h = embed_.index_select(0, tokens);
  for (size_t i = 0; i < layers_.size(); ++i) {
    h = layers_[i]->Forward(h, meta, cache);
    if (observer) observer(static_cast<int>(i), h);
  }
  if (!batch.all_logits) {
    std::vector<int64_t> last;
    int64_t row = 0;
    for (const SequenceChunk& s : batch.seqs) {
      row += s.num_tokens;
      last.push_back(row - 1);
    }
    h = h.index_select(0, at::tensor(last, at::TensorOptions().dtype(at::kLong)).to(device_));
  }
  h = RmsNorm(h, final_norm_, config_.rms_norm_eps);
  return at::matmul(h, lm_head_.t()).to(at::kFloat);
}

}  // namespace stepserve
