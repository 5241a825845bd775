#include "text/parsers/stop_string_matcher.h"

#include <algorithm>
#include <deque>
#include <utility>

namespace stepserve::text {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops, bool include_stop_str_in_output)
    : include_stop_(include_stop_str_in_output) {
  for (auto& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
  nodes_.emplace_back();
  // The trie.
  for (std::size_t i = 0; i < stops_.size(); ++i) {
    std::int32_t node = 0;
    for (unsigned char c : stops_[i]) {
      std::int32_t child = Child(node, c);
      if (child < 0) {
        child = static_cast<std::int32_t>(nodes_.size());
        Node n;
        n.depth = nodes_[node].depth + 1;
        nodes_.push_back(std::move(n));
        auto& next = nodes_[node].next;
        next.insert(std::lower_bound(next.begin(), next.end(), std::make_pair(c, std::int32_t{-1})),
                    {c, child});
      }
      node = child;
    }
    nodes_[node].match = static_cast<std::int32_t>(i);  // a duplicate stop string keeps the last index
  }
  // Failure links, breadth first; a node's match falls back to its failure node's (a shorter suffix).
  std::deque<std::int32_t> queue;
  for (auto [c, child] : nodes_[0].next) {
    (void)c;
    nodes_[child].fail = 0;
    queue.push_back(child);
  }
  while (!queue.empty()) {
    std::int32_t node = queue.front();
    queue.pop_front();
    if (nodes_[node].match < 0) nodes_[node].match = nodes_[nodes_[node].fail].match;
    for (auto [c, child] : nodes_[node].next) {
      nodes_[child].fail = Step(nodes_[node].fail, c);
      queue.push_back(child);
    }
  }
}

std::int32_t StopStringMatcher::Child(std::int32_t node, unsigned char c) const {
  const auto& next = nodes_[node].next;
  auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(c, std::int32_t{-1}));
  return it != next.end() && it->first == c ? it->second : -1;
}

std::int32_t StopStringMatcher::Step(std::int32_t node, unsigned char c) const {
  while (true) {
    std::int32_t child = Child(node, c);
    if (child >= 0) return child;
    if (node == 0) return 0;
    node = nodes_[node].fail;
  }
}

StopStringMatcher::Result StopStringMatcher::Feed(std::string_view delta) {
  Result result;
  if (stopped_) {
    result.stopped = true;
    result.matched = matched_;
    return result;
  }
  if (stops_.empty()) {
    result.text = std::string(delta);
    return result;
  }
  // pending_ holds the last depth(state_) bytes; text before them has been returned.
  std::size_t base = pending_.size();
  pending_.append(delta);
  for (std::size_t i = 0; i < delta.size(); ++i) {
    state_ = Step(state_, static_cast<unsigned char>(delta[i]));
    std::int32_t match = nodes_[state_].match;
    if (match >= 0) {
      const std::string& stop = stops_[match];
      std::size_t end = base + i + 1;  // end of the match within pending_
      std::size_t keep = include_stop_ ? end : end - stop.size();
      result.text = pending_.substr(0, keep);
      result.stopped = stopped_ = true;
      result.matched = matched_ = stop;
      pending_.clear();
      return result;
    }
  }
  std::size_t hold = static_cast<std::size_t>(nodes_[state_].depth);
  result.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return result;
}

std::string StopStringMatcher::Finish() {
  std::string rest = std::move(pending_);
  pending_.clear();
  return stopped_ ? std::string() : rest;
}

}  // namespace stepserve::text
