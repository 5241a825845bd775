// stepserve-forward: runs one sequence through the model and writes its logits to a safetensors file.
//
//   stepserve-forward --model=DIR|PRESET --tokens=1,2,3 [--dtype=float32|bfloat16] --out=FILE
//
// Any problem gives a one-line error and exit code 2.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "engine/forward_batch.h"
#include "engine/kv_cache.h"
#include "common/exception_text.h"
#include "common/logging.h"
#include "model/model_loader.h"
#include "model/loading/safetensors.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "stepserve-forward: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> flags = {{"dtype", "float32"}};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("usage: stepserve-forward --model=DIR|PRESET --tokens=1,2,3 [--dtype=float32|bfloat16] --out=FILE\n");
      return 0;
    }
    if (arg.rfind("--", 0) != 0 || arg.find('=') == std::string::npos) {
      return Fail(absl::StrCat("bad argument '", arg, "' (expected --name=value)"));
    }
    const size_t eq = arg.find('=');
    const std::string key = arg.substr(2, eq - 2);
    if (key != "model" && key != "tokens" && key != "dtype" && key != "out") {
      return Fail(absl::StrCat("unknown flag --", key));
    }
    flags[key] = arg.substr(eq + 1);
  }
  for (const char* required : {"model", "tokens", "out"}) {
    if (flags[required].empty()) return Fail(absl::StrCat("--", required, " is required"));
  }
  std::vector<int64_t> tokens;
  for (absl::string_view part : absl::StrSplit(flags["tokens"], ',')) {
    int64_t id;
    if (!absl::SimpleAtoi(part, &id)) return Fail(absl::StrCat("--tokens: '", part, "' is not an integer"));
    tokens.push_back(id);
  }
  auto dtype = stepserve::ParseDtype(flags["dtype"]);
  if (!dtype.ok()) return Fail(absl::StrCat("--dtype: ", dtype.status().message()));

  stepserve::ModelLoadOptions options;
  options.dtype = *dtype;
  auto model = stepserve::LoadModel(flags["model"], options);
  if (!model.ok()) return Fail(absl::StrCat("--model: ", model.status().message()));
  const stepserve::ModelConfig& config = (*model)->config();
  for (int64_t id : tokens) {
    if (id < 0 || id >= config.vocab_size) {
      return Fail(absl::StrCat("--tokens: token id ", id, " is outside the vocabulary [0, ", config.vocab_size, ")"));
    }
  }

  const int block = 16;
  stepserve::KvCacheOptions kv;
  kv.block_size = block;
  kv.num_blocks_full = static_cast<int32_t>((tokens.size() + block - 1) / block);
  kv.num_blocks_sliding = kv.num_blocks_full + 1;
  kv.dtype = *dtype;
  stepserve::PagedKvCache cache(config, kv);
  stepserve::KvSequence seq;
  stepserve::ForwardBatch batch;
  batch.token_ids = at::tensor(tokens, at::TensorOptions().dtype(at::kLong));
  batch.seqs.push_back({static_cast<int64_t>(tokens.size()), 0, &seq});
  batch.all_logits = true;
  absl::StatusOr<at::Tensor> logits = absl::UnknownError("not run");
  try {
    logits = Forward(**model, batch, &cache);
  } catch (const std::exception& e) {  // a device error or a bug: one line and exit 2, never an abort
    return Fail(absl::StrCat("forward pass failed: ", stepserve::ExceptionText(e)));
  }
  if (!logits.ok()) return Fail(std::string(logits.status().message()));
  if (auto st = stepserve::WriteSafetensors(flags["out"], {{"logits", *logits}}); !st.ok()) {
    return Fail(absl::StrCat("--out: ", st.message()));
  }
  return 0;
}
