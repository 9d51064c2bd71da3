// One exception type for bad input: dcrt::UsageError of the public header (one line, with the fix). main() prints
// it and exits 2; any other exception exits 1.
#pragma once

#include <dcrt/host.h>

namespace dcrt_host {

using HostError = dcrt::UsageError;

}  // namespace dcrt_host
