// TensorBoard event files: CRC-32C, TFRecord framing and the Event messages of
// launch/proto/event.proto.
#include "launch/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "launch/proto/event.pb.h"

namespace sy {
namespace {

// CRC-32C (Castagnoli): the reflected polynomial 0x82F63B78, one table lookup per byte.
constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? 0x82F63B78u : 0u);
    table[byte] = crc;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

void put_u32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(value >> (8 * i)));
}

void put_u64(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(value >> (8 * i)));
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) crc = kCrc32cTable[(crc ^ bytes[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

struct EventFileWriter::State {
  std::string path;
  std::FILE* file = nullptr;

  // One TFRecord: length (u64 LE), masked CRC of those 8 bytes, the data, masked CRC of the data.
  absl::Status write_record(const std::string& data) {
    std::string record;
    record.reserve(data.size() + 16);
    put_u64(record, data.size());
    put_u32(record, masked_crc32c(record.data(), 8));
    record += data;
    put_u32(record, masked_crc32c(data.data(), data.size()));
    if (std::fwrite(record.data(), 1, record.size(), file) != record.size()) {
      return absl::DataLossError(absl::StrCat(path, ": write failed: ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }
};

EventFileWriter::EventFileWriter() : state_(std::make_unique<State>()) {}

EventFileWriter::~EventFileWriter() {
  if (state_->file != nullptr) std::fclose(state_->file);
}

absl::StatusOr<std::unique_ptr<EventFileWriter>> EventFileWriter::open(const std::string& directory) {
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (error) return absl::PermissionDeniedError(absl::StrCat(directory, ": cannot create: ", error.message()));
  const double now = static_cast<double>(std::time(nullptr));
  const std::string base = absl::StrCat(directory, "/events.out.tfevents.", static_cast<int64_t>(now), ".", host_name());
  std::unique_ptr<EventFileWriter> writer(new EventFileWriter());
  State& state = *writer->state_;
  // "x": never append to another writer's file (a second run started within the same second).
  for (const std::string& candidate : {base, absl::StrCat(base, ".", getpid())}) {
    state.path = candidate;
    state.file = std::fopen(candidate.c_str(), "wbx");
    if (state.file != nullptr || errno != EEXIST) break;
  }
  if (state.file == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(state.path, ": cannot create: ", std::strerror(errno)));
  }
  tensorboard::Event event;
  event.set_wall_time(now);
  event.set_file_version("brain.Event:2");
  if (absl::Status status = state.write_record(event.SerializeAsString()); !status.ok()) return status;
  if (absl::Status status = writer->flush(); !status.ok()) return status;
  return writer;
}

absl::Status EventFileWriter::add_scalar(const std::string& tag, int64_t step, double value, double wall_time) {
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  tensorboard::Summary::Value* scalar = event.mutable_summary()->add_value();
  scalar->set_tag(tag);
  scalar->set_simple_value(static_cast<float>(value));
  return state_->write_record(event.SerializeAsString());
}

absl::Status EventFileWriter::flush() {
  if (std::fflush(state_->file) != 0) {
    return absl::DataLossError(absl::StrCat(state_->path, ": flush failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

const std::string& EventFileWriter::path() const { return state_->path; }

}  // namespace sy
