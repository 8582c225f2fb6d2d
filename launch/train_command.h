// `switchyard train --config FILE [--set key=value ...] [--dry-run] [--resume] [--stop-at-step N]`.
#pragma once

#include <string>
#include <vector>

namespace sy {

int run_train(const std::vector<std::string>& args);

}  // namespace sy
