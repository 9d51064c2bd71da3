// A small JSON reader for manifest.json: objects, arrays, strings, numbers, true/false/null.
// No new dependency for one file; it parses what dcrt writes (json.dumps), nothing more exotic.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace dcrt_host {

class Json {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };

  static Json parse(const std::string& text);  // throws HostError with the byte offset

  Kind kind() const { return kind_; }
  bool has(const std::string& key) const;
  const Json& operator[](const std::string& key) const;  // throws when missing: names the key
  const Json& operator[](size_t index) const;
  const std::vector<Json>& items() const;                 // an array's elements
  const std::map<std::string, Json>& fields() const;      // an object's members
  const std::string& str() const;
  double num() const;
  long long integer() const;
  bool boolean() const;

 private:
  friend class JsonParser;
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  double number_ = 0.0;
  std::string string_;
  std::vector<Json> array_;
  std::map<std::string, Json> object_;
};

}  // namespace dcrt_host
