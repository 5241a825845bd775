#include "client/sse.h"

#include <nlohmann/json.hpp>

namespace stepserve::client {

void SseParser::Feed(const char* data, size_t size, std::vector<SseEvent>* events) {
  for (size_t i = 0; i < size; ++i) {
    const char c = data[i];
    if (c == '\n' && after_cr_) {  // the second half of "\r\n"
      after_cr_ = false;
      continue;
    }
    after_cr_ = c == '\r';
    if (c == '\r' || c == '\n') {
      Line(events);
      line_.clear();
    } else {
      line_.push_back(c);
    }
  }
}

void SseParser::Line(std::vector<SseEvent>* events) {
  if (line_.empty()) {  // a blank line dispatches the event
    if (has_data_) events->push_back(std::move(current_));
    current_ = SseEvent();
    has_data_ = false;
    return;
  }
  if (line_[0] == ':') return;  // a comment
  const size_t colon = line_.find(':');
  const std::string field = line_.substr(0, colon);
  std::string value;
  if (colon != std::string::npos) {
    value = line_.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.erase(0, 1);
  }
  if (field == "data") {
    if (has_data_) current_.data.push_back('\n');
    current_.data += value;
    has_data_ = true;
  } else if (field == "event") {
    current_.event = value;
  } else if (field == "id") {
    current_.id = value;
  }  // "retry" and unknown fields are ignored
}

bool ParseStreamChunk(const std::string& data, StreamChunk* chunk, std::string* error) {
  *chunk = StreamChunk();
  if (data == "[DONE]") {
    chunk->done = true;
    return true;
  }
  const nlohmann::json j = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    *error = "a stream event is not a JSON object: " + data.substr(0, 200);
    return false;
  }
  const auto text_of = [](const nlohmann::json& o, const char* key) -> std::string {
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (auto e = j.find("error"); e != j.end() && !e->is_null()) {
    chunk->error = e->is_object() ? text_of(*e, "message") : e->dump();
    if (chunk->error.empty()) chunk->error = e->dump();
    return true;
  }
  if (auto choices = j.find("choices"); choices != j.end()) {
    if (!choices->is_array()) {
      *error = "\"choices\" is not an array";
      return false;
    }
    if (!choices->empty()) {
      const auto& choice = (*choices)[0];
      if (!choice.is_object()) {
        *error = "choices[0] is not an object";
        return false;
      }
      chunk->content = text_of(choice, "text");
      if (auto fr = choice.find("finish_reason"); fr != choice.end() && fr->is_string()) {
        chunk->finish_reason = fr->get<std::string>();
      }
      if (auto delta = choice.find("delta"); delta != choice.end() && delta->is_object()) {
        chunk->content += text_of(*delta, "content");
        chunk->reasoning = text_of(*delta, "reasoning_content");
        if (chunk->reasoning.empty()) chunk->reasoning = text_of(*delta, "reasoning");
        if (auto calls = delta->find("tool_calls"); calls != delta->end() && calls->is_array()) {
          for (const auto& call : *calls) {
            if (!call.is_object()) continue;
            ToolCallChunk t;
            if (auto idx = call.find("index"); idx != call.end() && idx->is_number_integer()) {
              t.index = idx->get<int>();
            }
            t.id = text_of(call, "id");
            if (auto fn = call.find("function"); fn != call.end() && fn->is_object()) {
              t.name = text_of(*fn, "name");
              t.arguments = text_of(*fn, "arguments");
            }
            chunk->tool_calls.push_back(std::move(t));
          }
        }
      }
    }
  }
  const auto int_of = [](const nlohmann::json& o, const char* key) -> int64_t {
    auto it = o.find(key);
    return it != o.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  };
  if (auto usage = j.find("usage"); usage != j.end() && usage->is_object()) {
    chunk->has_usage = true;
    chunk->prompt_tokens = int_of(*usage, "prompt_tokens");
    chunk->completion_tokens = int_of(*usage, "completion_tokens");
    if (auto d = usage->find("prompt_tokens_details"); d != usage->end() && d->is_object()) {
      chunk->cached_tokens = int_of(*d, "cached_tokens");
    }
  }
  return true;
}

}  // namespace stepserve::client
