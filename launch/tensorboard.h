// TensorBoard event files without TensorBoard: Event/Summary protobuf messages
// (launch/proto/event.proto, our own definition of the wire-compatible subset) framed as
// TFRecords: uint64 length, masked CRC-32C of the length, data, masked CRC-32C of the data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace sy {

uint32_t crc32c(const void* data, size_t size);
// TFRecord's mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t size);

class EventFileWriter {
 public:
  // Creates directory/events.out.tfevents.<seconds>.<hostname> starting with a file_version event.
  static absl::StatusOr<std::unique_ptr<EventFileWriter>> open(const std::string& directory);
  ~EventFileWriter();
  absl::Status add_scalar(const std::string& tag, int64_t step, double value, double wall_time);
  absl::Status flush();
  const std::string& path() const;

 private:
  EventFileWriter();
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sy
