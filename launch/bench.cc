#include "launch/bench.h"

#include <cstdio>

namespace sy {

int run_bench(const std::vector<std::string>& args) {
  std::fprintf(stderr, "switchyard bench: expected a suite name (ops), got %zu args\n", args.size());
  return 2;
}

}  // namespace sy
