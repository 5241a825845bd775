// Comma-separated token id lists ("1,2,3") for the command lines.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <google/protobuf/repeated_field.h>

namespace stepserve::client {

// "1,2, 3" -> {1,2,3}; "" -> {}. False with a message on anything that is not a non-negative int32.
bool ParseTokenList(const std::string& text, std::vector<int32_t>* out, std::string* error);

std::string JoinTokens(const std::vector<int32_t>& tokens);
std::string JoinTokens(const google::protobuf::RepeatedField<int32_t>& tokens);

}  // namespace stepserve::client
