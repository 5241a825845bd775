// Device dispatch of paged attention and the KV write.
#include "model/ops/paged_attention.h"

namespace stepserve {

at::Tensor PagedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& k_pool,
                          const at::Tensor& v_pool, const AttentionMetadata& meta, const AttentionShape& shape,
                          const at::Tensor& gate) {
#ifdef STEPSERVE_CUDA
  if (q.is_cuda()) return PagedAttentionCuda(q, k, v, k_pool, v_pool, meta, shape, gate);
#endif
  return PagedAttentionAten(q, k, v, k_pool, v_pool, meta, shape, gate);
}

void WriteKvCache(const at::Tensor& k, const at::Tensor& v, at::Tensor& k_pool, at::Tensor& v_pool,
                  const AttentionMetadata& meta) {
#ifdef STEPSERVE_CUDA
  if (k.is_cuda()) return WriteKvCacheCuda(k, v, k_pool, v_pool, meta);
#endif
  WriteKvCacheAten(k, v, k_pool, v_pool, meta);
}

}  // namespace stepserve
