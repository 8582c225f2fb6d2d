// Training metrics, three ways: a live progress line on a terminal (plain lines otherwise),
// one JSON object per logged step in metrics.jsonl, and TensorBoard event files
// (launch/tensorboard.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "launch/config.h"

namespace sy {

using Scalars = std::vector<std::pair<std::string, double>>;  // in the order they are shown

class MetricsWriter {
 public:
  // Creates output_dir (and output_dir/tensorboard) as needed; appends to metrics.jsonl.
  static absl::StatusOr<std::unique_ptr<MetricsWriter>> open(const std::string& output_dir,
                                                             const LoggingConfig& config);
  ~MetricsWriter();
  // One record: a JSON line {"step": s, "<name>": value, ...} and a TensorBoard scalar per name
  // (tag = name, '/' groups them: "train/lm_loss", "moe/layer1/load_cv").
  void log(int64_t step, const Scalars& scalars);
  // The console: `line` replaces the live line on a terminal, or is printed as a line.
  void progress(const std::string& line);
  // A message that must stay on screen (evaluation results, checkpoints): ends the live line.
  void print(const std::string& line);
  void flush();

 private:
  MetricsWriter();
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sy
