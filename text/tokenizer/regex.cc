#include "text/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace stepserve::text {
namespace {

// Per thread: one match data (only the whole match is read back) and a JIT stack large enough for long
// whitespace runs under `\s+(?!\S)`.
struct ThreadMatchState {
  pcre2_match_data* match_data = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  pcre2_match_context* context = nullptr;
  ThreadMatchState() {
    match_data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (context != nullptr && jit_stack != nullptr) pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~ThreadMatchState() {
    pcre2_match_data_free(match_data);
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(jit_stack);
  }
};

ThreadMatchState& State() {
  thread_local ThreadMatchState state;
  return state;
}

std::string EscapeLiteral(std::string_view s) {
  std::string out = "\\Q";
  // \Q...\E quotes everything but "\E" itself.
  size_t pos = 0;
  while (true) {
    const size_t e = s.find("\\E", pos);
    if (e == std::string_view::npos) {
      out.append(s.substr(pos));
      break;
    }
    out.append(s.substr(pos, e - pos));
    out.append("\\E\\\\E\\Q");
    pos = e + 2;
  }
  out.append("\\E");
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(std::string_view pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_compile_context* cc = pcre2_compile_context_create(nullptr);
  pcre2_set_compile_extra_options(cc, PCRE2_EXTRA_ALT_BSUX);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_ALT_BSUX, &error, &offset, cc);
  pcre2_compile_context_free(cc);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat("regex /", std::string(pattern), "/ does not compile at offset ", offset,
                                                   ": ", reinterpret_cast<const char*>(message)));
  }
  std::unique_ptr<Regex> re(new Regex());
  re->pattern_ = std::string(pattern);
  re->code_ = code;
  re->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return re;
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::Literal(std::string_view literal) {
  return Compile(EscapeLiteral(literal));
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

bool Regex::Find(std::string_view text, size_t start, size_t* match_begin, size_t* match_end) const {
  ThreadMatchState& st = State();
  auto* code = static_cast<pcre2_code*>(code_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  int rc;
  if (jit_) {
    rc = pcre2_jit_match(code, subject, text.size(), start, 0, st.match_data, st.context);
  } else {
    rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, st.match_data, st.context);
  }
  if (rc < 0 && rc != PCRE2_ERROR_NOMATCH && jit_) {
    // Past the JIT stack: the interpreter (heap-backed backtracking) finds the same match.
    rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, st.match_data,
                     st.context);
  }
  if (rc < 0) return false;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.match_data);
  *match_begin = ov[0];
  *match_end = ov[1];
  return true;
}

}  // namespace stepserve::text
