#include "json.h"

#include <cstdlib>

#include "errors.h"

namespace dcrt_host {

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : s_(text) {}

  Json document() {
    Json value = parse_value();
    skip_space();
    if (pos_ != s_.size()) fail("trailing characters");
    return value;
  }

 private:
  const std::string& s_;
  size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw JsonError("invalid JSON at byte " + std::to_string(pos_) + ": " + what);
  }

  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) ++pos_;
  }

  char peek() {
    skip_space();
    if (pos_ >= s_.size()) fail("unexpected end");
    return s_[pos_];
  }

  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  bool literal(const char* word) {
    const std::string w(word);
    if (s_.compare(pos_, w.size(), w) != 0) return false;
    pos_ += w.size();
    return true;
  }

  Json parse_value() {
    Json v;
    const char c = peek();
    if (c == '{') return parse_object();
    if (c == '[') return parse_array();
    if (c == '"') {
      v.kind_ = Json::Kind::kString;
      v.string_ = parse_string();
    } else if (literal("true") || literal("false")) {
      v.kind_ = Json::Kind::kBool;
      v.bool_ = s_[pos_ - 1] == 'e' && s_[pos_ - 2] == 'u';
    } else if (literal("null")) {
      v.kind_ = Json::Kind::kNull;
    } else if (literal("NaN") || literal("Infinity") || literal("-Infinity")) {
      v.kind_ = Json::Kind::kNumber;  // Python's json.dumps writes these; dcrt never needs their value
    } else {
      v.kind_ = Json::Kind::kNumber;
      const char* begin = s_.c_str() + pos_;
      char* end = nullptr;
      v.number_ = std::strtod(begin, &end);
      if (end == begin) fail("expected a value");
      pos_ += static_cast<size_t>(end - begin);
    }
    return v;
  }

  Json parse_object() {
    Json v;
    v.kind_ = Json::Kind::kObject;
    expect('{');
    if (peek() == '}') return ++pos_, v;
    while (true) {
      if (peek() != '"') fail("expected a key");
      std::string key = parse_string();
      expect(':');
      v.object_[key] = parse_value();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}');
      return v;
    }
  }

  Json parse_array() {
    Json v;
    v.kind_ = Json::Kind::kArray;
    expect('[');
    if (peek() == ']') return ++pos_, v;
    while (true) {
      v.array_.push_back(parse_value());
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']');
      return v;
    }
  }

  // Escapes are kept simple: \uXXXX below 0x80 is decoded, others become '?' (names and paths dcrt
  // writes are ASCII; a non-ASCII path in a message is only cosmetic).
  std::string parse_string() {
    expect('"');
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      char c = s_[pos_++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          if (pos_ + 4 > s_.size()) fail("short \\u escape");
          const long code = std::strtol(s_.substr(pos_, 4).c_str(), nullptr, 16);
          pos_ += 4;
          out += code < 0x80 ? static_cast<char>(code) : '?';
          break;
        }
        default: out += e;  // \" \\ \/
      }
    }
    if (pos_ >= s_.size()) fail("unterminated string");
    ++pos_;
    return out;
  }
};

Json Json::parse(const std::string& text) { return JsonParser(text).document(); }

bool Json::has(const std::string& key) const { return kind_ == Kind::kObject && object_.count(key) > 0; }

const Json& Json::operator[](const std::string& key) const {
  if (!has(key)) throw JsonError("missing JSON key \"" + key + "\"");
  return object_.at(key);
}

const Json& Json::operator[](size_t index) const {
  if (kind_ != Kind::kArray || index >= array_.size()) throw JsonError("JSON index out of range");
  return array_[index];
}

const std::vector<Json>& Json::items() const {
  if (kind_ != Kind::kArray) throw JsonError("JSON value is not an array");
  return array_;
}

const std::map<std::string, Json>& Json::fields() const {
  if (kind_ != Kind::kObject) throw JsonError("JSON value is not an object");
  return object_;
}

const std::string& Json::str() const {
  if (kind_ != Kind::kString) throw JsonError("JSON value is not a string");
  return string_;
}

double Json::num() const {
  if (kind_ != Kind::kNumber) throw JsonError("JSON value is not a number");
  return number_;
}

long long Json::integer() const { return static_cast<long long>(num()); }

bool Json::boolean() const {
  if (kind_ != Kind::kBool) throw JsonError("JSON value is not a boolean");
  return bool_;
}

}  // namespace dcrt_host
