// Byte-level BPE: GPT-2's file format, encoding with a per-thread word cache, and training
// with incremental pair counts.
#include "data/tokenizer.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/check.h"
#include "core/io/atomic_file.h"
#include "data/pretokenize.h"

namespace sy {
namespace {

// GPT-2 writes token bytes as printable characters: the bytes that are printable in Latin-1
// ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves, the other 68 map in byte order to
// U+0100, U+0101, ... (so a space is 'Ġ' U+0120 and a newline 'Ċ' U+010A).
struct ByteAlphabet {
  std::array<char32_t, 256> code_point{};  // byte -> character
  std::array<int16_t, 324> byte{};         // character (< U+0144) -> byte, -1 if none

  ByteAlphabet() {
    byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      code_point[b] = printable ? static_cast<char32_t>(b) : next++;
      byte[code_point[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

void append_utf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else {  // the alphabet stays below U+0800
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// Token bytes -> the printable form used in encoder.json and vocab.bpe.
std::string to_printable(std::string_view bytes) {
  std::string out;
  for (char b : bytes) append_utf8(byte_alphabet().code_point[static_cast<unsigned char>(b)], &out);
  return out;
}

// The printable form -> token bytes; false if a character is not in the alphabet.
bool from_printable(std::string_view text, std::string* bytes) {
  bytes->clear();
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    char32_t c;
    if (lead < 0x80) {
      c = lead;
      i += 1;
    } else if ((lead & 0xE0) == 0xC0 && i + 1 < text.size() && (text[i + 1] & 0xC0) == 0x80) {
      c = ((lead & 0x1Fu) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3Fu);
      i += 2;
    } else {
      return false;
    }
    if (c >= byte_alphabet().byte.size() || byte_alphabet().byte[c] < 0) return false;
    bytes->push_back(static_cast<char>(byte_alphabet().byte[c]));
  }
  return true;
}

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}
int32_t key_left(uint64_t key) { return static_cast<int32_t>(key >> 32); }
int32_t key_right(uint64_t key) { return static_cast<int32_t>(key & 0xFFFFFFFFu); }

absl::StatusOr<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open (", std::strerror(errno), ")"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  return text.str();
}

// Pieces longer than this are encoded every time: they are rare and would crowd the cache.
constexpr size_t kMaxCachedPieceBytes = 128;
// A thread's cache starts over when it holds this many pieces.
constexpr size_t kMaxCachedPieces = size_t{1} << 17;

// A piece's symbols during BPE, as a linked list over its bytes.
struct Symbol {
  int32_t id;  // -1 once merged into its left neighbour
  int32_t prev, next;
};
// An adjacent pair that has a merge: the symbol on its left and both ids when it was found.
struct Candidate {
  int32_t rank, left, left_id, right_id;
  bool operator>(const Candidate& other) const { return rank != other.rank ? rank > other.rank : left > other.left; }
};

// One thread's encoding state: the encodings of the pieces it has seen (piece -> span of
// `tokens`), and buffers for BPE reused across pieces.
struct WordCache {
  absl::flat_hash_map<std::string, std::pair<uint32_t, uint32_t>> spans;
  std::vector<int32_t> tokens;
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap, batch;
};

struct Merge {
  int32_t rank;
  int32_t merged;  // the token id of left + right
};

}  // namespace

struct Tokenizer::State {
  std::vector<std::string> tokens;  // id -> bytes
  std::array<int32_t, 256> byte_token{};
  std::vector<std::pair<int32_t, int32_t>> merges;  // rank -> (left, right)
  absl::flat_hash_map<uint64_t, Merge> merge_of;    // pair_key(left, right) -> merge
  int32_t end_of_text = -1;

  // One cache per thread keeps encode() lock-free but for the lookup of the cache itself.
  mutable std::mutex caches_mutex;
  mutable absl::flat_hash_map<std::thread::id, std::shared_ptr<WordCache>> caches;

  std::shared_ptr<WordCache> cache_for_this_thread() const {
    std::lock_guard<std::mutex> lock(caches_mutex);
    std::shared_ptr<WordCache>& cache = caches[std::this_thread::get_id()];
    if (!cache) cache = std::make_shared<WordCache>();
    return cache;
  }

  // Builds merge_of from tokens and merges; an error names the first bad merge.
  absl::Status index_merges(const absl::flat_hash_map<std::string, int32_t>& id_of);

  void bpe(std::string_view piece, WordCache* scratch, std::vector<int32_t>* out) const;
};

absl::Status Tokenizer::State::index_merges(const absl::flat_hash_map<std::string, int32_t>& id_of) {
  merge_of.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto [left, right] = merges[rank];
    auto merged = id_of.find(tokens[left] + tokens[right]);
    if (merged == id_of.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", rank + 1, " '", to_printable(tokens[left]), " ", to_printable(tokens[right]),
                       "' makes '", to_printable(tokens[left] + tokens[right]), "', which is not in encoder.json"));
    }
    if (!merge_of.emplace(pair_key(left, right), Merge{static_cast<int32_t>(rank), merged->second}).second) {
      return absl::InvalidArgumentError(absl::StrCat("merge ", rank + 1, " '", to_printable(tokens[left]), " ",
                                                     to_printable(tokens[right]), "' appears twice"));
    }
  }
  return absl::OkStatus();
}

// GPT-2's merge rule: while some adjacent pair has a merge, merge every occurrence (left to
// right) of the pair with the lowest rank. A heap of candidate pairs keeps long pieces
// O(n log n); the candidates of one rank are applied together, in position order, before
// any pair they create is considered, which is exactly the rule. (gpt-3-encoder looks pairs up
// by the string left + "," + right, so 11 pairs of GPT-2's vocabulary that are not merges, all
// around ",,", share a merge's key; every punctuation string of up to 7 symbols built from
// them BPE-encodes the same either way, so the rule here stays the canonical one.)
void Tokenizer::State::bpe(std::string_view piece, WordCache* scratch, std::vector<int32_t>* out) const {
  const auto n = static_cast<int32_t>(piece.size());
  std::vector<Symbol>& symbols = scratch->symbols;
  symbols.resize(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_token[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  std::vector<Candidate>& heap = scratch->heap;
  std::vector<Candidate>& batch = scratch->batch;
  heap.clear();
  auto push_pair = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    auto merge = merge_of.find(pair_key(symbols[left].id, symbols[right].id));
    if (merge == merge_of.end()) return;
    heap.push_back({merge->second.rank, left, symbols[left].id, symbols[right].id});
    std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    batch.clear();
    const int32_t rank = heap.front().rank;
    while (!heap.empty() && heap.front().rank == rank) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<>());
      batch.push_back(heap.back());
      heap.pop_back();
    }
    const int32_t merged = merge_of.find(pair_key(batch[0].left_id, batch[0].right_id))->second.merged;
    for (const Candidate& candidate : batch) {
      // A symbol's right neighbour changes only when the symbol itself merges (and changes
      // id), so matching ids mean the pair is still there.
      Symbol& left = symbols[candidate.left];
      if (left.id != candidate.left_id || left.next < 0 || symbols[left.next].id != candidate.right_id) continue;
      Symbol& right = symbols[left.next];
      left.id = merged;
      right.id = -1;
      left.next = right.next;
      if (left.next >= 0) symbols[left.next].prev = candidate.left;
      if (left.prev >= 0) push_pair(left.prev);
      push_pair(candidate.left);
    }
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out->push_back(symbols[i].id);
}

Tokenizer::Tokenizer() : state_(std::make_unique<State>()) { state_->byte_token.fill(-1); }
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(state_->tokens.size()); }
int32_t Tokenizer::end_of_text() const { return state_->end_of_text; }

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  const State& state = *state_;
  SY_CHECK(!state.tokens.empty(), "Tokenizer::encode on an empty tokenizer (load or train one first)");
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  std::shared_ptr<WordCache> cache = state.cache_for_this_thread();
  for (size_t begin = 0; begin < text.size();) {
    const size_t length = pretoken_length(text, begin);
    const std::string_view piece = text.substr(begin, length);
    begin += length;
    if (length == 1) {
      out.push_back(state.byte_token[static_cast<unsigned char>(piece[0])]);
      continue;
    }
    if (auto hit = cache->spans.find(absl::string_view(piece.data(), piece.size())); hit != cache->spans.end()) {
      const int32_t* first = cache->tokens.data() + hit->second.first;
      out.insert(out.end(), first, first + hit->second.second);
      continue;
    }
    const size_t first = out.size();
    state.bpe(piece, cache.get(), &out);
    if (length > kMaxCachedPieceBytes) continue;
    if (cache->spans.size() >= kMaxCachedPieces) {
      cache->spans.clear();
      cache->tokens.clear();
    }
    cache->spans.emplace(std::string(piece), std::make_pair(static_cast<uint32_t>(cache->tokens.size()),
                                                            static_cast<uint32_t>(out.size() - first)));
    cache->tokens.insert(cache->tokens.end(), out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& tokens) const {
  std::string text;
  for (int32_t token : tokens) {
    SY_CHECK(token >= 0 && token < vocab_size(), "Tokenizer::decode: token ", token, " is outside the vocabulary of ",
             vocab_size());
    text += state_->tokens[token];
  }
  return text;
}

absl::StatusOr<Tokenizer> Tokenizer::load(const std::string& directory) {
  const std::string encoder_path = (std::filesystem::path(directory) / "encoder.json").string();
  const std::string merges_path = (std::filesystem::path(directory) / "vocab.bpe").string();
  absl::StatusOr<std::string> encoder_text = read_file(encoder_path);
  if (!encoder_text.ok()) return encoder_text.status();
  absl::StatusOr<std::string> merges_text = read_file(merges_path);
  if (!merges_text.ok()) return merges_text.status();

  nlohmann::json encoder;
  try {
    encoder = nlohmann::json::parse(*encoder_text);
  } catch (const nlohmann::json::parse_error& error) {
    return absl::InvalidArgumentError(absl::StrCat(encoder_path, ": not valid JSON (at byte ", error.byte, ")"));
  }
  if (!encoder.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(encoder_path, ": expected a JSON object mapping token strings to ids"));
  }
  Tokenizer tokenizer;
  State& state = *tokenizer.state_;
  const size_t size = encoder.size();
  state.tokens.resize(size);
  std::vector<bool> seen(size, false);
  absl::flat_hash_map<std::string, int32_t> id_of;
  id_of.reserve(size);
  std::string bytes;
  for (const auto& [key, value] : encoder.items()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() >= static_cast<int64_t>(size)) {
      return absl::InvalidArgumentError(absl::StrCat(encoder_path, ": token '", key, "' has id ", value.dump(),
                                                     ", expected an integer in [0, ", size, ")"));
    }
    const auto id = value.get<int32_t>();
    if (seen[id]) {
      return absl::InvalidArgumentError(
          absl::StrCat(encoder_path, ": id ", id, " is given to two tokens, one is '", key, "'"));
    }
    seen[id] = true;
    if (key == kEndOfText) {
      state.end_of_text = id;
      bytes = key;
    } else if (!from_printable(key, &bytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat(encoder_path, ": token '", key, "' has a character outside GPT-2's byte alphabet"));
    }
    state.tokens[id] = bytes;
    if (key != kEndOfText) id_of.emplace(bytes, id);
  }
  if (state.end_of_text < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(encoder_path, ": no '", kEndOfText, "' entry (the end-of-document token)"));
  }
  for (int b = 0; b < 256; ++b) {
    auto it = id_of.find(std::string(1, static_cast<char>(b)));
    if (it == id_of.end()) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: no token for byte 0x%02x ('%s')", encoder_path, b,
                                                        to_printable(std::string(1, static_cast<char>(b)))));
    }
    state.byte_token[b] = it->second;
  }

  // vocab.bpe: a "#version" line, then one merge per line, "left right", highest priority first.
  const std::string_view merges_view = *merges_text;
  if (merges_view.substr(0, 8) != "#version") {
    return absl::InvalidArgumentError(absl::StrCat(merges_path, ": line 1: expected the '#version' header"));
  }
  size_t line_begin = merges_view.find('\n');
  for (size_t line = 2; line_begin < merges_view.size(); ++line) {
    ++line_begin;  // past the '\n'
    size_t line_end = std::min(merges_view.find('\n', line_begin), merges_view.size());
    const std::string_view text = merges_view.substr(line_begin, line_end - line_begin);
    line_begin = line_end;
    std::vector<std::string_view> parts;
    for (size_t i = 0; i < text.size();) {
      const size_t end = std::min(text.find_first_of(" \t\r", i), text.size());
      if (end > i) parts.push_back(text.substr(i, end - i));
      i = end + 1;
    }
    if (parts.empty()) continue;
    if (parts.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(merges_path, ": line ", line, ": expected two tokens, found '", std::string(text), "'"));
    }
    std::array<int32_t, 2> ids{};
    for (int side = 0; side < 2; ++side) {
      auto it = from_printable(parts[side], &bytes) ? id_of.find(bytes) : id_of.end();
      if (it == id_of.end()) {
        return absl::InvalidArgumentError(absl::StrCat(merges_path, ": line ", line, ": '", std::string(parts[side]),
                                                       "' is not a token in encoder.json"));
      }
      ids[side] = it->second;
    }
    state.merges.emplace_back(ids[0], ids[1]);
  }
  if (absl::Status status = state.index_merges(id_of); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(merges_path, ": ", status.message()));
  }
  return tokenizer;
}

absl::Status Tokenizer::save(const std::string& directory) const {
  const State& state = *state_;
  if (state.tokens.empty()) return absl::FailedPreconditionError("Tokenizer::save: the tokenizer is empty");
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (error) return absl::PermissionDeniedError(absl::StrCat(directory, ": cannot create: ", error.message()));
  // The layout of GPT-2's own files: one line of JSON in id order, and "#version: 0.2".
  std::string encoder = "{";
  for (size_t id = 0; id < state.tokens.size(); ++id) {
    const std::string key =
        static_cast<int32_t>(id) == state.end_of_text ? std::string(kEndOfText) : to_printable(state.tokens[id]);
    absl::StrAppend(&encoder, id == 0 ? "" : ", ", nlohmann::json(key).dump(-1, ' ', /*ensure_ascii=*/true), ": ", id);
  }
  encoder += "}";
  std::string merges = "#version: 0.2\n";
  for (const auto& [left, right] : state.merges) {
    absl::StrAppend(&merges, to_printable(state.tokens[left]), " ", to_printable(state.tokens[right]), "\n");
  }
  const std::filesystem::path path(directory);
  if (absl::Status status = write_file_atomically((path / "encoder.json").string(), encoder); !status.ok()) {
    return status;
  }
  return write_file_atomically((path / "vocab.bpe").string(), merges);
}

// ---- training ----

namespace {

// A distinct piece of the corpus as its current symbols, with its number of occurrences.
struct Word {
  std::vector<int32_t> symbols;
  int64_t count = 0;
};

}  // namespace

absl::StatusOr<Tokenizer> Tokenizer::train(const std::vector<std::string>& texts, int64_t vocab_size) {
  if (vocab_size < 257 || vocab_size > (int64_t{1} << 31) - 1) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer vocab_size must be in [257, 2^31) (256 bytes + ",
                                                   kEndOfText, " + merges), got ", vocab_size));
  }
  Tokenizer tokenizer;
  State& state = *tokenizer.state_;
  absl::flat_hash_map<std::string, int32_t> id_of;
  // The 256 byte tokens in GPT-2's order (by their printable character), so ids 0..255 agree.
  std::array<int, 256> bytes_in_order{};
  for (int b = 0; b < 256; ++b) bytes_in_order[b] = b;
  std::sort(bytes_in_order.begin(), bytes_in_order.end(),
            [](int a, int b) { return byte_alphabet().code_point[a] < byte_alphabet().code_point[b]; });
  for (int b : bytes_in_order) {
    state.byte_token[b] = static_cast<int32_t>(state.tokens.size());
    state.tokens.emplace_back(1, static_cast<char>(b));
    id_of.emplace(state.tokens.back(), state.byte_token[b]);
  }

  // Distinct pieces of two bytes or more, numbered in order of first appearance.
  std::vector<Word> words;
  {
    absl::flat_hash_map<std::string_view, int32_t> word_of;
    for (const std::string& text : texts) {
      for (size_t begin = 0; begin < text.size();) {
        const size_t length = pretoken_length(text, begin);
        const std::string_view piece = std::string_view(text).substr(begin, length);
        begin += length;
        if (length < 2) continue;
        auto [it, inserted] = word_of.emplace(piece, static_cast<int32_t>(words.size()));
        if (inserted) {
          Word word;
          for (char b : piece) word.symbols.push_back(state.byte_token[static_cast<unsigned char>(b)]);
          words.push_back(std::move(word));
        }
        ++words[it->second].count;
      }
    }
  }

  absl::flat_hash_map<uint64_t, int64_t> pair_count;
  absl::flat_hash_map<uint64_t, std::vector<int32_t>> words_with;  // may list a word twice or stale
  for (size_t w = 0; w < words.size(); ++w) {
    const std::vector<int32_t>& s = words[w].symbols;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t key = pair_key(s[i], s[i + 1]);
      pair_count[key] += words[w].count;
      std::vector<int32_t>& list = words_with[key];
      if (list.empty() || list.back() != static_cast<int32_t>(w)) list.push_back(static_cast<int32_t>(w));
    }
  }

  // Max-heap of (count, pair) with lazy updates: an entry whose count is out of date is
  // pushed again with the current count when it reaches the top. Ties go to the pair whose
  // (left bytes, right bytes) sort first.
  struct Entry {
    int64_t count;
    uint64_t key;
  };
  const std::vector<std::string>& tokens = state.tokens;
  auto lower_priority = [&tokens](const Entry& a, const Entry& b) {
    if (a.count != b.count) return a.count < b.count;
    const std::string& a_left = tokens[key_left(a.key)];
    const std::string& b_left = tokens[key_left(b.key)];
    if (a_left != b_left) return a_left > b_left;
    return tokens[key_right(a.key)] > tokens[key_right(b.key)];
  };
  std::vector<Entry> heap;
  heap.reserve(pair_count.size());
  for (const auto& [key, count] : pair_count) heap.push_back({count, key});
  std::make_heap(heap.begin(), heap.end(), lower_priority);

  absl::flat_hash_map<uint64_t, int64_t> delta;
  const int64_t regular_tokens = vocab_size - 1;  // all but <|endoftext|>
  while (static_cast<int64_t>(state.tokens.size()) < regular_tokens) {
    if (heap.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the training text allows only ", state.tokens.size() + 1, " tokens (", state.merges.size(),
                       " merges), fewer than vocab_size ", vocab_size, "; give more text or a smaller vocab_size"));
    }
    std::pop_heap(heap.begin(), heap.end(), lower_priority);
    const Entry top = heap.back();
    heap.pop_back();
    auto current = pair_count.find(top.key);
    const int64_t count = current == pair_count.end() ? 0 : current->second;
    if (count != top.count) {
      if (count > 0) {
        heap.push_back({count, top.key});
        std::push_heap(heap.begin(), heap.end(), lower_priority);
      }
      continue;
    }
    const int32_t left = key_left(top.key), right = key_right(top.key);
    std::string merged_bytes = state.tokens[left] + state.tokens[right];
    auto [merged_it, is_new] = id_of.emplace(merged_bytes, static_cast<int32_t>(state.tokens.size()));
    const int32_t merged = merged_it->second;
    if (is_new) state.tokens.push_back(std::move(merged_bytes));
    state.merges.emplace_back(left, right);

    std::vector<int32_t> affected = std::move(words_with[top.key]);
    words_with.erase(top.key);
    std::sort(affected.begin(), affected.end());
    affected.erase(std::unique(affected.begin(), affected.end()), affected.end());
    delta.clear();
    for (int32_t w : affected) {
      Word& word = words[w];
      std::vector<int32_t>& s = word.symbols;
      bool found = false;
      for (size_t i = 0; i + 1 < s.size() && !found; ++i) found = s[i] == left && s[i + 1] == right;
      if (!found) continue;
      for (size_t i = 0; i + 1 < s.size(); ++i) delta[pair_key(s[i], s[i + 1])] -= word.count;
      size_t kept = 0;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
          s[kept++] = merged;
          ++i;
        } else {
          s[kept++] = s[i];
        }
      }
      s.resize(kept);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t key = pair_key(s[i], s[i + 1]);
        delta[key] += word.count;
        if (s[i] == merged || s[i + 1] == merged) {
          std::vector<int32_t>& list = words_with[key];
          if (list.empty() || list.back() != w) list.push_back(w);
        }
      }
    }
    for (const auto& [key, change] : delta) {
      if (change == 0) continue;
      int64_t& total = pair_count[key];
      total += change;
      if (change > 0) {
        heap.push_back({total, key});
        std::push_heap(heap.begin(), heap.end(), lower_priority);
      }
      if (total == 0) pair_count.erase(key);
    }
  }
  state.end_of_text = static_cast<int32_t>(state.tokens.size());
  state.tokens.emplace_back(kEndOfText);
  if (absl::Status status = state.index_merges(id_of); !status.ok()) return status;
  return tokenizer;
}

}  // namespace sy
