// `switchyard preprocess`: text files -> an indexed dataset, optionally training the tokenizer
// on the same documents first.
#pragma once

#include <string>
#include <vector>

namespace sy {

int run_preprocess(const std::vector<std::string>& args);

}  // namespace sy
