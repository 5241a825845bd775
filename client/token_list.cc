#include "client/token_list.h"

#include <cerrno>
#include <cstdlib>

namespace stepserve::client {

bool ParseTokenList(const std::string& text, std::vector<int32_t>* out, std::string* error) {
  out->clear();
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(start, comma - start);
    const auto b = item.find_first_not_of(" \t");
    const auto e = item.find_last_not_of(" \t");
    item = b == std::string::npos ? "" : item.substr(b, e - b + 1);
    if (item.empty()) {
      if (text.find_first_not_of(" \t") == std::string::npos) return true;  // an empty list
      *error = "empty token id in \"" + text + "\"";
      return false;
    }
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > INT32_MAX) {
      *error = "invalid token id \"" + item + "\"";
      return false;
    }
    out->push_back(static_cast<int32_t>(v));
    start = comma + 1;
  }
  return true;
}

namespace {
template <typename Range>
std::string Join(const Range& tokens) {
  std::string out;
  for (int32_t t : tokens) {
    if (!out.empty()) out += ",";
    out += std::to_string(t);
  }
  return out;
}
}  // namespace

std::string JoinTokens(const std::vector<int32_t>& tokens) { return Join(tokens); }
std::string JoinTokens(const google::protobuf::RepeatedField<int32_t>& tokens) { return Join(tokens); }

}  // namespace stepserve::client
