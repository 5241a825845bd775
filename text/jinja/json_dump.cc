// Python's json.dumps over template values (the `tojson` filter as transformers defines it).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "text/jinja/builtins.h"

namespace stepserve::text::jinja {
namespace {

void AppendHex4(unsigned v, std::string* out) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "\\u%04x", v & 0xffff);
  out->append(buf);
}

void DumpString(const std::string& s, std::string* out) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      default:
        if (c < 0x20) {
          AppendHex4(c, out);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

class Dumper {
 public:
  explicit Dumper(const JsonDumpOptions& o) : o_(o) {
    indented_ = o.indent >= 0 || !o.indent_str.empty();
    indent_unit_ = !o.indent_str.empty() ? o.indent_str : std::string(o.indent > 0 ? o.indent : 0, ' ');
    item_sep_ = o.has_separators ? o.item_separator : (indented_ ? "," : ", ");
    key_sep_ = o.has_separators ? o.key_separator : ": ";
  }

  void Dump(const Value& v, int depth, std::string* out) {
    if (depth > 200) throw JinjaError("tojson: value nested too deeply");
    switch (v.kind) {
      case Value::Kind::kNone:
        out->append("null");
        return;
      case Value::Kind::kBool:
        out->append(v.b ? "true" : "false");
        return;
      case Value::Kind::kInt:
        out->append(std::to_string(v.i));
        return;
      case Value::Kind::kFloat:
        if (std::isnan(v.d)) {
          out->append("NaN");
        } else if (std::isinf(v.d)) {
          out->append(v.d < 0 ? "-Infinity" : "Infinity");
        } else {
          out->append(FormatFloat(v.d));
        }
        return;
      case Value::Kind::kString:
        Escape(v.s(), out);
        return;
      case Value::Kind::kList: {
        if (v.list->empty()) {
          out->append("[]");
          return;
        }
        out->push_back('[');
        for (size_t k = 0; k < v.list->size(); ++k) {
          if (k > 0) out->append(item_sep_);
          NewLine(depth + 1, out);
          Dump((*v.list)[k], depth + 1, out);
        }
        NewLine(depth, out);
        out->push_back(']');
        return;
      }
      case Value::Kind::kDict: {
        if (v.dict->size() == 0) {
          out->append("{}");
          return;
        }
        std::vector<const std::pair<std::string, Value>*> entries;
        for (const auto& e : v.dict->entries()) entries.push_back(&e);
        if (o_.sort_keys) {
          std::stable_sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->first < b->first; });
        }
        out->push_back('{');
        for (size_t k = 0; k < entries.size(); ++k) {
          if (k > 0) out->append(item_sep_);
          NewLine(depth + 1, out);
          Escape(entries[k]->first, out);
          out->append(key_sep_);
          Dump(entries[k]->second, depth + 1, out);
        }
        NewLine(depth, out);
        out->push_back('}');
        return;
      }
      default:
        throw JinjaError(absl::StrCat("Object of type ", TypeName(v), " is not JSON serializable"));
    }
  }

 private:
  void NewLine(int depth, std::string* out) const {
    if (!indented_) return;
    out->push_back('\n');
    for (int k = 0; k < depth; ++k) out->append(indent_unit_);
  }

  void Escape(const std::string& s, std::string* out) const {
    if (!o_.ensure_ascii) {
      DumpString(s, out);
      return;
    }
    std::string ascii_escaped;
    DumpString(s, &ascii_escaped);
    // Re-escape non-ASCII code points of the already escaped string.
    for (char32_t c : DecodeUtf8(ascii_escaped)) {
      if (c < 0x80) {
        out->push_back(static_cast<char>(c));
      } else if (c >= 0x10000) {
        char32_t x = c - 0x10000;
        AppendHex4(0xd800 + (x >> 10), out);
        AppendHex4(0xdc00 + (x & 0x3ff), out);
      } else {
        AppendHex4(c, out);
      }
    }
  }

  const JsonDumpOptions& o_;
  bool indented_;
  std::string indent_unit_;
  std::string item_sep_;
  std::string key_sep_;
};

}  // namespace

std::string JsonDumps(const Value& value, const JsonDumpOptions& options) {
  std::string out;
  Dumper(options).Dump(value, 0, &out);
  return out;
}

}  // namespace stepserve::text::jinja
