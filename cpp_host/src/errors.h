// One exception type: main() prints its message as one line and exits non-zero.
#pragma once

#include <stdexcept>
#include <string>

namespace dcrt_host {

class HostError : public std::runtime_error {
 public:
  explicit HostError(const std::string& message) : std::runtime_error(message) {}
};

// A malformed JSON document or a missing / mistyped key; the reader of a file adds the file's name.
class JsonError : public HostError {
 public:
  explicit JsonError(const std::string& message) : HostError(message) {}
};

}  // namespace dcrt_host
