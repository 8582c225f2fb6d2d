// `switchyard bench ...`: speed tables against the PyTorch peer, medians of repeated runs.
#pragma once

#include <string>
#include <vector>

namespace sy {

int run_bench(const std::vector<std::string>& args);
int run_bench_tokenizer(const std::vector<std::string>& args);  // launch/bench_tokenizer.cc
int run_bench_train_step(const std::vector<std::string>& args);  // launch/bench_train_step.cc
int run_bench_dispatcher(const std::vector<std::string>& args);  // launch/bench_dispatcher.cc

}  // namespace sy
