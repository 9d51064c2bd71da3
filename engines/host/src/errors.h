// One exception type: main() prints its message as one line and exits non-zero.
#pragma once

#include <stdexcept>
#include <string>

namespace dcrt_host {

class HostError : public std::runtime_error {
 public:
  explicit HostError(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace dcrt_host
