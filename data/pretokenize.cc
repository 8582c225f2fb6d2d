// A hand-written scanner for the GPT-2 pre-tokenizer pattern (see pretokenize.h): one pass,
// no backtracking beyond the single character `\s+(?!\S)` gives back.
#include "data/pretokenize.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <array>
#include <cstdint>

namespace sy {
namespace {

constexpr std::array<CharClass, 128> make_ascii_classes() {
  std::array<CharClass, 128> classes{};
  for (int c = 0; c < 128; ++c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      classes[c] = CharClass::kLetter;
    } else if (c >= '0' && c <= '9') {
      classes[c] = CharClass::kNumber;
    } else if (c == ' ' || (c >= '\t' && c <= '\r')) {
      classes[c] = CharClass::kWhitespace;
    } else {
      classes[c] = CharClass::kOther;
    }
  }
  return classes;
}
constexpr std::array<CharClass, 128> kAsciiClasses = make_ascii_classes();

struct Char {
  CharClass cls;
  size_t end;  // byte offset just past the character
};

// The character at byte offset `i`; ill-formed UTF-8 reads as U+FFFD (class kOther).
inline Char char_at(std::string_view text, size_t i) {
  const auto byte = static_cast<unsigned char>(text[i]);
  if (byte < 0x80) return {kAsciiClasses[byte], i + 1};
  // ICU's macro takes int32_t offsets: give it a window of at most one sequence.
  const auto* window = reinterpret_cast<const uint8_t*>(text.data() + i);
  const auto length = static_cast<int32_t>(std::min<size_t>(text.size() - i, 4));
  int32_t offset = 0;
  UChar32 code_point;
  U8_NEXT_OR_FFFD(window, offset, length, code_point);
  return {char_class(static_cast<char32_t>(code_point)), i + static_cast<size_t>(offset)};
}

}  // namespace

CharClass char_class(char32_t code_point) {
  if (code_point < 0x80) return kAsciiClasses[code_point];
  // JavaScript's \s is WhiteSpace (TAB VT FF SP NBSP ZWNBSP and category Zs) plus
  // LineTerminator (LF CR LS PS); NEL (U+0085) is not in it.
  if (code_point == 0x2028 || code_point == 0x2029 || code_point == 0xFEFF) return CharClass::kWhitespace;
  const uint32_t mask = U_GET_GC_MASK(static_cast<UChar32>(code_point));
  if (mask & U_GC_L_MASK) return CharClass::kLetter;
  if (mask & U_GC_N_MASK) return CharClass::kNumber;
  if (mask & U_GC_ZS_MASK) return CharClass::kWhitespace;
  return CharClass::kOther;
}

size_t pretoken_length(std::string_view text, size_t begin) {
  const size_t n = text.size();
  // 's 't 're 've 'm 'll 'd: ASCII, case-sensitive, whatever follows.
  if (text[begin] == '\'' && begin + 1 < n) {
    const char a = text[begin + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (begin + 2 < n) {
      const char b = text[begin + 2];
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
  }
  Char first = char_at(text, begin);
  // ` ?X+` for X in letters, numbers, others: one leading U+0020 joins the run after it.
  if (text[begin] == ' ' && first.end < n) {
    const Char next = char_at(text, first.end);
    if (next.cls != CharClass::kWhitespace) first = next;
  }
  size_t end = first.end;
  if (first.cls != CharClass::kWhitespace) {
    while (end < n) {
      const Char c = char_at(text, end);
      if (c.cls != first.cls) break;
      end = c.end;
    }
    return end - begin;
  }
  // `\s+(?!\S)` takes the run, less its last character when a non-space follows it;
  // a single whitespace character before a non-space is `\s+`.
  size_t last_start = begin;
  while (end < n) {
    const Char c = char_at(text, end);
    if (c.cls != CharClass::kWhitespace) break;
    last_start = end;
    end = c.end;
  }
  if (end == n || last_start == begin) return end - begin;
  return last_start - begin;
}

std::vector<std::string_view> pretokenize(std::string_view text) {
  std::vector<std::string_view> pieces;
  for (size_t begin = 0; begin < text.size();) {
    const size_t length = pretoken_length(text, begin);
    pieces.push_back(text.substr(begin, length));
    begin += length;
  }
  return pieces;
}

}  // namespace sy
