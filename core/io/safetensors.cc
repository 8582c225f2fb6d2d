#include "core/io/safetensors.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/io/atomic_file.h"

namespace sy {
namespace {

// Largest header we accept (the format's own reference implementation caps it at 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

}  // namespace

const char* safetensors_dtype(DType dtype) {
  switch (dtype) {
    case DType::kF64: return "F64";
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kBool: return "BOOL";
  }
  return "?";
}

absl::StatusOr<DType> dtype_from_safetensors(const std::string& code) {
  for (DType dtype : {DType::kF64, DType::kF32, DType::kBF16, DType::kF16, DType::kI32, DType::kI64,
                      DType::kBool}) {
    if (code == safetensors_dtype(dtype)) return dtype;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported safetensors dtype '", code, "' (expected F64, F32, BF16, F16, I64, I32 or BOOL)"));
}

absl::StatusOr<Tensor> SafetensorsFile::get(const std::string& name) const {
  std::vector<std::string> names;
  for (const auto& [key, tensor] : tensors) {
    if (key == name) return tensor;
    names.push_back(key);
  }
  return absl::NotFoundError(absl::StrCat("no tensor '", name, "' in the file (it has: ",
                                          absl::StrJoin(names, ", "), ")"));
}

absl::StatusOr<SafetensorsFile> read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open for reading"));
  in.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  auto bad = [&path](const std::string& what) {
    return absl::DataLossError(absl::StrCat(path, ": not a valid safetensors file: ", what));
  };
  unsigned char length_bytes[8];
  if (file_size < 8 || !in.read(reinterpret_cast<char*>(length_bytes), 8)) {
    return bad(absl::StrCat("the file has ", file_size, " bytes, fewer than the 8-byte header length"));
  }
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | length_bytes[i];
  if (header_size > kMaxHeaderBytes || 8 + header_size > file_size) {
    return bad(absl::StrCat("header length ", header_size, " does not fit in a file of ", file_size, " bytes"));
  }
  std::string header_text(header_size, '\0');
  in.read(header_text.data(), static_cast<std::streamsize>(header_size));
  nlohmann::json header = nlohmann::json::parse(header_text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return bad("the header is not a JSON object");

  const uint64_t data_size = file_size - 8 - header_size;
  SafetensorsFile file;
  struct Entry {
    uint64_t begin, end;
    std::string name;
    DType dtype;
    Shape shape;
  };
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& value = it.value();
    if (name == "__metadata__") {
      if (!value.is_object()) return bad("__metadata__ is not an object");
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string()) return bad(absl::StrCat("metadata '", m.key(), "' is not a string"));
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") ||
        !value.contains("data_offsets") || !value["dtype"].is_string() || !value["shape"].is_array() ||
        !value["data_offsets"].is_array() || value["data_offsets"].size() != 2) {
      return bad(absl::StrCat("tensor '", name, "' needs dtype, shape and two data_offsets"));
    }
    absl::StatusOr<DType> dtype = dtype_from_safetensors(value["dtype"].get<std::string>());
    if (!dtype.ok()) return bad(absl::StrCat("tensor '", name, "': ", dtype.status().message()));
    Shape shape;
    for (const auto& dim : value["shape"]) {
      if (!dim.is_number_unsigned()) return bad(absl::StrCat("tensor '", name, "' has a negative or non-integer dim"));
      shape.push_back(dim.get<int64_t>());
    }
    if (!value["data_offsets"][0].is_number_unsigned() || !value["data_offsets"][1].is_number_unsigned()) {
      return bad(absl::StrCat("tensor '", name, "' has non-integer data_offsets"));
    }
    uint64_t begin = value["data_offsets"][0].get<uint64_t>(), end = value["data_offsets"][1].get<uint64_t>();
    uint64_t expected = static_cast<uint64_t>(shape_numel(shape)) * element_size(*dtype);
    if (begin > end || end > data_size) {
      return bad(absl::StrCat("tensor '", name, "' spans bytes [", begin, ", ", end, ") of a ", data_size,
                              "-byte data section (truncated file?)"));
    }
    if (end - begin != expected) {
      return bad(absl::StrCat("tensor '", name, "' of shape ", ShapeString(shape), " and dtype ",
                              safetensors_dtype(*dtype), " needs ", expected, " bytes, its offsets give ",
                              end - begin));
    }
    entries.push_back({begin, end, name, *dtype, shape});
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  uint64_t position = 0;
  for (const Entry& entry : entries) {
    if (entry.begin < position) return bad(absl::StrCat("tensor '", entry.name, "' overlaps the previous one"));
    position = entry.end;
  }
  for (const Entry& entry : entries) {
    Tensor tensor = Tensor::empty(entry.shape, entry.dtype);
    in.seekg(static_cast<std::streamoff>(8 + header_size + entry.begin));
    if (!in.read(static_cast<char*>(tensor.data_ptr()), static_cast<std::streamsize>(entry.end - entry.begin))) {
      return bad(absl::StrCat("could not read the bytes of tensor '", entry.name, "'"));
    }
    file.tensors.emplace_back(entry.name, tensor);
  }
  return file;
}

absl::Status write_safetensors(const std::string& path,
                               const std::vector<std::pair<std::string, Tensor>>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> contiguous;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__" || !names.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor name '", name, "' is reserved or repeated"));
    }
    Tensor host = tensor.detach().to(Device::CPU()).contiguous();
    uint64_t bytes = host.nbytes();
    header[name] = {{"dtype", safetensors_dtype(host.dtype())}, {"shape", host.shape()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(host);
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // align the data section
  return write_file_atomically(path, [&](std::ostream& out) {
    uint64_t length = header_text.size();
    unsigned char length_bytes[8];
    for (int i = 0; i < 8; ++i) length_bytes[i] = static_cast<unsigned char>(length >> (8 * i));
    out.write(reinterpret_cast<const char*>(length_bytes), 8);
    out.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));
    for (const Tensor& tensor : contiguous) {
      out.write(static_cast<const char*>(tensor.data_ptr()), static_cast<std::streamsize>(tensor.nbytes()));
    }
  });
}

}  // namespace sy
