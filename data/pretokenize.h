// The GPT-2 pre-tokenizer: splits UTF-8 text into the pieces BPE merges within, as the regex
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ does under
// JavaScript semantics (the `u` flag; the npm package gpt-3-encoder is the reference), by hand.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace sy {

// The classes the pattern tells apart. kWhitespace is JavaScript's \s: White_Space without
// U+0085, plus U+FEFF. Letters and numbers are general categories L* and N* (ICU's data).
enum class CharClass { kLetter, kNumber, kWhitespace, kOther };
CharClass char_class(char32_t code_point);

// Byte length of the piece that starts at `begin` (< text.size()). Pieces tile the text.
// Invalid UTF-8: each maximal ill-formed subsequence (as U8_NEXT and TextDecoder count them)
// is one kOther character, as the U+FFFD a JavaScript caller would see in its place; its
// bytes stay as they are, so decode(encode(x)) == x for any bytes.
size_t pretoken_length(std::string_view text, size_t begin);

std::vector<std::string_view> pretokenize(std::string_view text);

}  // namespace sy
