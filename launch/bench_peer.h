// What every `switchyard bench` command shares: medians, and running a PyTorch peer script
// (scripts/bench/*.py, the serve() protocol of scripts/bench/peer.py) with PyTorch's best CPU
// setting, so that each table compares against a well-tuned PyTorch.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sy {

double median(std::vector<double> samples);

// Runs /usr/bin/python3 scripts/bench/<script> on `cases` (JSON objects, each with a "name"),
// with OMP_NUM_THREADS = this process's OpenMP thread count, tcmalloc preloaded, the OpenMP
// build of OpenBLAS and this process's OPENBLAS_CORETYPE (launch/runtime_env.h). Returns each
// case's result row (the JSON object the peer printed) by name; empty when the peer could not
// run. `note` receives a line on how PyTorch ran, or the peer's error output.
std::map<std::string, nlohmann::json> run_torch_peer(const std::string& script, const nlohmann::json& cases,
                                                     int warmup, int repeats, std::string* note);

}  // namespace sy
