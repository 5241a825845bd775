// Drives Generate streams against a server with gRPC's callback API: a closed loop that keeps
// `concurrency` requests in flight, or an open loop that sends at precomputed arrival times (optionally
// capped at `concurrency` in flight). Every request carries a deadline, so a run always ends.
//
// Multi-turn conversations: a conversation's turns are sent one after the other, each as soon as the
// previous one ended, with the prompt the previous prompt + its generated tokens + the next user message
// (NextTurnPrompt). A conversation holds one concurrency slot for all its turns, and in an open loop the
// arrival times are those of the conversations' first turns. When a turn fails, the conversation's later
// turns are not sent and count as failed with code SKIPPED. Single requests are conversations of one turn
// (SingleTurn, client/workload.h).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/channel.h>

#include "client/bench_report.h"
#include "client/workload.h"

namespace stepserve::client {

struct LoadConfig {
  int64_t concurrency = 1;          // conversations in flight at most; 0: no cap (open loop only)
  std::vector<double> arrivals_s;   // open loop: send time of each conversation; empty: closed loop
  double request_timeout_s = 600;   // the deadline of each request
  bool ignore_eos = true;           // exact output lengths
  std::string cache_salt;           // GenerateRequest.cache_salt of every request
  // Called about 5 times a second from the thread inside Run with (finished, total) requests.
  std::function<void(int64_t, int64_t)> progress;
};

struct LoadResult {
  // Conversation-major: all turns of the first conversation, then the second's, ...
  std::vector<RequestResult> requests;
  double duration_s = 0;                // from the first send to the last completion
};

LoadResult RunConversations(const std::shared_ptr<grpc::Channel>& channel,
                            const std::vector<Conversation>& conversations, const LoadConfig& config);

}  // namespace stepserve::client
