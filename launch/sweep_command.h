// `switchyard sweep --config SWEEP.yaml [--dry-run] [--output DIR] [--jobs N] [--ranks R]` and
// `switchyard sweep report DIR` (the tables, then scripts/sweep/fit.py for fits and plots).
#pragma once

#include <string>
#include <vector>

namespace sy {

int run_sweep(const std::vector<std::string>& args);

}  // namespace sy
