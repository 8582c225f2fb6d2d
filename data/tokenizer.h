// Byte-level BPE (GPT-2): text -> UTF-8 bytes, split by the GPT-2 pre-tokenizer pattern,
// each piece merged by rank order from vocab.bpe, tokens looked up in encoder.json. Loads and
// saves the GPT-2 file format and trains a vocabulary of its own on a corpus.
//
// Encoding matches the npm package gpt-3-encoder (the reference) token for token; the
// pre-tokenizer is data/pretokenize.h. Text is taken literally: the characters
// "<|endoftext|>" in a text encode as ordinary text, never as end_of_text(); callers append
// end_of_text() themselves. Invalid UTF-8 is encoded byte for byte (see pretokenize.h), so
// decode(encode(x)) == x for any bytes x.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace sy {

class Tokenizer {
 public:
  // The end-of-document token, present in every vocabulary Switchyard writes or accepts.
  static constexpr const char* kEndOfText = "<|endoftext|>";

  // `directory` holds encoder.json and vocab.bpe. Errors name the file and what is wrong
  // (unreadable file, bad JSON, a merge naming a token not in encoder.json, ...).
  static absl::StatusOr<Tokenizer> load(const std::string& directory);
  // Learns merges from `texts` until the vocabulary (256 bytes + merges + <|endoftext|>)
  // has `vocab_size` entries. Deterministic: ties are broken by the pair's byte order.
  // Ids 0..255 are the bytes in GPT-2's order, then merge results, then <|endoftext|>.
  static absl::StatusOr<Tokenizer> train(const std::vector<std::string>& texts, int64_t vocab_size);
  // Writes encoder.json and vocab.bpe into `directory` (created if missing) under temporary
  // names renamed into place.
  absl::Status save(const std::string& directory) const;

  std::vector<int32_t> encode(std::string_view text) const;  // thread-safe (a word cache per thread)
  // The bytes of the tokens, concatenated (end_of_text() gives "<|endoftext|>").
  std::string decode(const std::vector<int32_t>& tokens) const;
  int64_t vocab_size() const;
  int32_t end_of_text() const;

  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sy
