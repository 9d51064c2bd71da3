// CLIP's byte-level BPE tokenizer (open_clip's SimpleTokenizer, which dcrt.models.tokenizer wraps), from the
// vocabulary `dcrt build` writes into the bundle. Text cleaning is open_clip's "lower" (ftfy.fix_text, HTML
// unescaping, whitespace collapsing, lowercasing), with ICU for the Unicode tables; what of ftfy is not reproduced
// is listed in cpp_host/README.md ("Tokenizer").
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace dcrt_host {

class ClipTokenizer {
 public:
  // The merges file (open_clip's bpe_simple_vocab_16e6.txt, uncompressed): a version line, then one merge a line.
  explicit ClipTokenizer(const std::string& vocabulary_path);

  // The BPE ids of `text` after cleaning (no start / end tokens): SimpleTokenizer.encode.
  std::vector<int64_t> encode(const std::string& text) const;
  // [start] + encode(prompt) + [end], truncated to `length` (the last id then the end token), padded with 0.
  std::vector<int64_t> tokens(const std::string& prompt, int64_t length) const;

 private:
  std::vector<int64_t> bpe(const std::string& token) const;

  std::unordered_map<std::string, int64_t> encoder_;  // symbol -> id
  std::unordered_map<std::string, int> ranks_;        // "first second" -> merge priority
  std::string byte_symbol_[256];                      // bytes_to_unicode, as UTF-8
  int64_t start_ = 0, end_ = 0;
};

// SimpleTokenizer's cleaning ("lower"): ftfy.fix_text's fixes that apply to typed text, html.unescape twice,
// whitespace collapsed, lowercase. UTF-8 in and out.
std::string clean_prompt(const std::string& text);

}  // namespace dcrt_host
