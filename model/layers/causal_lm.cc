#include "model/layers/causal_lm.h"

#include <algorithm>
#include <limits>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "model/ops/rms_norm.h"
#include "common/status_macros.h"

namespace stepserve {

CausalLM::CausalLM(ModelConfig config, ModelWeights weights, at::Device device, ParallelContext parallel)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      parallel_(std::move(parallel)),
      kv_config_(RankLocalAttentionConfig(config_, parallel_.config)),
      device_(device) {
  embed_ = weights_.Get("model.embed_tokens.weight");
  dtype_ = embed_.scalar_type();
  final_norm_ = weights_.Get("model.norm.weight");
  // On a group, this rank's vocabulary rows (the embedding is replicated: tied, its rows are cut here).
  lm_head_ = weights_.Get("lm_head.weight");
  if (config_.tie_word_embeddings) {
    const IndexRange rows = parallel_.distributed() ? VocabRange(config_.vocab_size, parallel_.config)
                                                    : IndexRange{0, config_.vocab_size};
    lm_head_ = embed_.narrow(0, rows.begin, rows.size);
  }
  for (int i = 0; i < config_.num_hidden_layers; ++i) {
    layers_.push_back(std::make_unique<DecoderLayer>(config_, i, weights_, device_, parallel_));
  }
}

absl::Status CausalLM::CheckChunk(int64_t start_pos, int64_t num_tokens, const int64_t* tokens) const {
  if (num_tokens <= 0) return absl::InvalidArgumentError("every sequence chunk needs at least one token");
  if (start_pos < 0) return absl::InvalidArgumentError("start_pos must not be negative");
  if (start_pos + num_tokens > config_.max_position_embeddings) {
    return absl::OutOfRangeError(absl::StrCat("positions up to ", start_pos + num_tokens,
                                              " exceed max_position_embeddings ", config_.max_position_embeddings));
  }
  for (int64_t i = 0; i < num_tokens; ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", tokens[i], " is outside the vocabulary [0, ",
                                                     config_.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

StepInputs CausalLM::Upload(const StepPlan& plan) const {
  return UploadStepPlan(plan, config_.MaxSlidingWindow(), device_,
                        {config_.HasAttentionKind(AttentionKind::kFull), config_.HasAttentionKind(AttentionKind::kSliding)});
}

absl::Status CausalLM::CheckPlan(const StepPlan& plan, const KvPools* pools) const {
  // Checks on the host plan only: nothing here reads device memory.
  int64_t sum = 0;
  bool any_cached = false;
  for (const PlannedChunk& ch : plan.chunks) {
    sum += ch.num_tokens;
    any_cached = any_cached || ch.cached;
  }
  if (sum != plan.num_tokens() || static_cast<int64_t>(plan.positions.size()) != sum) {
    return absl::InvalidArgumentError(absl::StrCat("chunks cover ", sum, " tokens but the plan has ",
                                                   plan.num_tokens()));
  }
  const int64_t* tokens = plan.token_ids.data();
  for (const PlannedChunk& ch : plan.chunks) {
    RETURN_IF_ERROR(CheckChunk(ch.start_pos, ch.num_tokens, tokens));
    tokens += ch.num_tokens;
  }
  if (any_cached && pools == nullptr) return absl::InvalidArgumentError("a chunk is cached but no KV pools were given");
  // The per-kind tables the metadata reads (a plan decoded from another rank is checked here too).
  for (int k = 0; k < kNumAttentionKinds; ++k) {
    if (!config_.HasAttentionKind(static_cast<AttentionKind>(k))) continue;
    const StepPlan::KindTables& kt = plan.kinds[k];
    if (kt.max_blocks < 0 || static_cast<int64_t>(kt.slot_mapping.size()) != sum ||
        static_cast<int64_t>(kt.block_tables.size()) != static_cast<int64_t>(plan.chunks.size()) * kt.max_blocks) {
      return absl::InvalidArgumentError(absl::StrCat("the plan's tables of attention kind ", k, " do not match its ",
                                                     plan.chunks.size(), " chunks and ", sum, " tokens"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> CausalLM::Execute(const StepPlan& plan, KvPools* pools,
                                             const LayerObserver& observer) const {
  RETURN_IF_ERROR(CheckPlan(plan, pools));
  const StepInputs step = Upload(plan);
  at::Tensor h = embed_.index_select(0, step.token_ids);
  for (size_t i = 0; i < layers_.size(); ++i) {
    h = layers_[i]->Forward(h, step, pools);
    if (observer) observer(static_cast<int>(i), h);
  }
  if (!plan.all_logits) h = h.index_select(0, step.logits_rows);
  h = RmsNorm(h, final_norm_, config_.rms_norm_eps);
  at::Tensor logits = at::matmul(h, lm_head_.t()).to(at::kFloat);
  if (!parallel_.distributed()) return logits;
  // Vocab-parallel lm_head: each rank has ceil(V/N) columns of the logits (the last ranks' end in padding
  // columns, -inf, past V: the all-gather needs equal shapes); rank 0 gathers them (one all-gather of
  // [rows, ceil(V/N)] fp32 per step), drops the padding, so no padded column can ever be sampled, and is the
  // only rank that returns them.
  const int64_t shard_rows = VocabShardRows(config_.vocab_size, parallel_.config);
  if (logits.size(1) < shard_rows) {
    logits = at::constant_pad_nd(logits, {0, shard_rows - logits.size(1)}, -std::numeric_limits<double>::infinity());
  }
  std::vector<at::Tensor> parts = parallel_.comm->AllGather(logits);
  if (parallel_.config.rank != 0) return at::Tensor();
  at::Tensor all = at::cat(parts, 1);
  return all.size(1) == config_.vocab_size ? all : all.narrow(1, 0, config_.vocab_size).contiguous();
}

}  // namespace stepserve
