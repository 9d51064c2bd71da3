#include "tokenizer.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/locid.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <sstream>

#include "errors.h"

namespace dcrt_host {

namespace {

using Text = std::u32string;

Text to_utf32(const std::string& utf8) {
  const icu::UnicodeString s = icu::UnicodeString::fromUTF8(utf8);
  Text out(static_cast<size_t>(s.countChar32()), U'\0');
  UErrorCode status = U_ZERO_ERROR;
  s.toUTF32(reinterpret_cast<UChar32*>(out.data()), static_cast<int32_t>(out.size()), status);
  return out;
}

std::string to_utf8(const Text& text) {
  std::string out;
  icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(text.data()), static_cast<int32_t>(text.size()))
      .toUTF8String(out);
  return out;
}

// Python's str.isspace() (what str.split() and str.strip() use).
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_letter(char32_t c) { return U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_L_MASK; }
bool is_number(char32_t c) { return U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK; }

Text normalize(const Text& text, bool compatibility) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = compatibility ? icu::Normalizer2::getNFKCInstance(status)
                                            : icu::Normalizer2::getNFCInstance(status);
  const icu::UnicodeString in = icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(text.data()),
                                                             static_cast<int32_t>(text.size()));
  const icu::UnicodeString out = n->normalize(in, status);
  if (U_FAILURE(status)) throw HostError("ICU cannot normalize the prompt: " + std::string(u_errorName(status)));
  std::string utf8;
  out.toUTF8String(utf8);
  return to_utf32(utf8);
}

// --- html.unescape, for character references (&#233; &#xE9;) and the XML entities plus &nbsp; -----------------------

bool named_entity(const Text& name, char32_t& c) {
  static const std::pair<const char32_t*, char32_t> kNames[] = {
      {U"amp", U'&'}, {U"lt", U'<'}, {U"gt", U'>'}, {U"quot", U'"'}, {U"apos", U'\''}, {U"nbsp", 0xA0}};
  for (const auto& [n, v] : kNames)
    if (name == n) return (c = v), true;
  return false;
}

Text unescape_html(const Text& text) {
  Text out;
  for (size_t i = 0; i < text.size(); ++i) {
    const size_t semi = text[i] == U'&' ? text.find(U';', i) : Text::npos;
    char32_t c = 0;
    if (semi != Text::npos && semi - i >= 2 && semi - i <= 33) {
      const Text body = text.substr(i + 1, semi - i - 1);
      bool ok = false;
      if (body[0] == U'#') {
        const bool hex = body.size() > 1 && (body[1] == U'x' || body[1] == U'X');
        const Text digits = body.substr(hex ? 2 : 1);
        unsigned long long v = 0;
        ok = !digits.empty() && digits.size() <= 8;
        for (char32_t d : digits) {
          const int value = d >= U'0' && d <= U'9'                ? static_cast<int>(d - U'0')
                            : hex && d >= U'a' && d <= U'f'       ? static_cast<int>(d - U'a' + 10)
                            : hex && d >= U'A' && d <= U'F'       ? static_cast<int>(d - U'A' + 10)
                                                                  : -1;
          if (value < 0) ok = false;
          v = v * (hex ? 16 : 10) + static_cast<unsigned>(std::max(value, 0));
        }
        // Python replaces surrogates and out-of-range values with U+FFFD (its cp1252 and NUL cases are not covered).
        if (ok) c = (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF || v == 0 ? 0xFFFD : static_cast<char32_t>(v);
      } else {
        ok = named_entity(body, c);
      }
      if (ok) {
        out.push_back(c);
        i = semi;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

// --- ftfy.fix_text (v6, default settings) on one segment, without its mojibake repair (fix_encoding) -----------------

char32_t cp1252(char32_t c) {  // fix_c1_controls: U+0080..U+009F as the Windows-1252 byte (undefined ones kept)
  static const char32_t kTable[32] = {0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                      0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D,   0x017D, 0x8F,
                                      0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                      0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};
  return c >= 0x80 && c <= 0x9F ? kTable[c - 0x80] : c;
}

const char32_t* ligature(char32_t c) {  // fix_latin_ligatures (ftfy.chardata.LIGATURES)
  switch (c) {
    case 0x0132: return U"IJ";
    case 0x0133: return U"ij";
    case 0x0149: return U"\u02BCn";
    case 0x01F1: return U"DZ";
    case 0x01F2: return U"Dz";
    case 0x01F3: return U"dz";
    case 0x01C4: return U"D\u017D";
    case 0x01C5: return U"D\u017E";
    case 0x01C6: return U"d\u017E";
    case 0x01C7: return U"LJ";
    case 0x01C8: return U"Lj";
    case 0x01C9: return U"lj";
    case 0x01CA: return U"NJ";
    case 0x01CB: return U"Nj";
    case 0x01CC: return U"nj";
    case 0xFB00: return U"ff";
    case 0xFB01: return U"fi";
    case 0xFB02: return U"fl";
    case 0xFB03: return U"ffi";
    case 0xFB04: return U"ffl";
    case 0xFB05: return U"\u017Ft";
    case 0xFB06: return U"st";
    default: return nullptr;
  }
}

bool control_char(char32_t c) {  // remove_control_chars (ftfy.chardata.CONTROL_CHARS)
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
         c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

Text fix_once(const Text& segment) {
  Text text = segment.find(U'<') == Text::npos ? unescape_html(segment) : segment;  // unescape_html="auto"
  Text a;
  for (char32_t c : text) a.push_back(cp1252(c));
  Text b;
  for (char32_t c : a) {
    if (const char32_t* l = ligature(c)) {
      b += l;
    } else if (c == 0x3000) {  // fix_character_width: the ideographic space, then the half/fullwidth forms' NFKC
      b.push_back(U' ');
    } else if (c >= 0xFF01 && c <= 0xFFEF) {
      b += normalize(Text(1, c), true);
    } else {
      b.push_back(c);
    }
  }
  Text d;
  for (size_t i = 0; i < b.size(); ++i) {
    char32_t c = b[i];
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) c = U'\'';  // uncurl_quotes
    if (c >= 0x201C && c <= 0x201F) c = U'"';
    if (c == 0x1B && i + 1 < b.size() && b[i + 1] == U'[') {  // remove_terminal_escapes: ESC [ (digit|;)* letter
      size_t j = i + 2;
      while (j < b.size() && ((b[j] >= U'0' && b[j] <= U'9') || b[j] == U';')) ++j;
      if (j < b.size() && ((b[j] >= U'a' && b[j] <= U'z') || (b[j] >= U'A' && b[j] <= U'Z'))) {
        i = j;
        continue;
      }
    }
    d.push_back(c);
  }
  Text e;
  for (char32_t c : d)
    if (!control_char(c)) e.push_back(c);
  return normalize(e, false);  // NFC
}

Text fix_text(const Text& text) {
  Text out;
  for (size_t pos = 0; pos < text.size();) {  // ftfy fixes each line on its own, each until it stops changing
    const size_t brk = text.find(U'\n', pos);
    const size_t end = brk == Text::npos ? text.size() : brk + 1;
    Text segment = text.substr(pos, end - pos);
    for (Text fixed = fix_once(segment); fixed != segment; fixed = fix_once(segment)) segment = fixed;
    out += segment;
    pos = end;
  }
  return out;
}

Text lowercase(const Text& text) {
  icu::UnicodeString s = icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(text.data()),
                                                       static_cast<int32_t>(text.size()));
  std::string utf8;
  s.toLower(icu::Locale::getRoot()).toUTF8String(utf8);  // full case mapping with final sigma, as str.lower()
  return to_utf32(utf8);
}

// open_clip's pattern: <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
std::vector<Text> split_words(const Text& text) {
  static const Text kFixed[] = {U"<start_of_text>", U"<end_of_text>", U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};
  std::vector<Text> words;
  for (size_t i = 0; i < text.size();) {
    bool matched = false;
    for (const Text& f : kFixed)
      if (text.compare(i, f.size(), f) == 0) {
        words.push_back(f);
        i += f.size();
        matched = true;
        break;
      }
    if (matched) continue;
    size_t j = i;
    if (is_letter(text[i])) {
      while (j < text.size() && is_letter(text[j])) ++j;
    } else if (is_number(text[i])) {
      j = i + 1;
    } else if (!is_space(text[i])) {
      while (j < text.size() && !is_space(text[j]) && !is_letter(text[j]) && !is_number(text[j])) ++j;
    } else {
      ++i;
      continue;
    }
    words.push_back(text.substr(i, j - i));
    i = j;
  }
  return words;
}

// Splits on Python's whitespace (str.split()).
std::vector<std::string> split_fields(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> fields;
  for (std::string f; in >> f;) fields.push_back(f);
  return fields;
}

}  // namespace

std::string clean_prompt(const std::string& text) {
  Text t = unescape_html(unescape_html(fix_text(to_utf32(text))));  // basic_clean
  Text collapsed;                                                    // whitespace_clean: " ".join(text.split())
  for (size_t i = 0; i < t.size();) {
    while (i < t.size() && is_space(t[i])) ++i;
    size_t j = i;
    while (j < t.size() && !is_space(t[j])) ++j;
    if (j > i) {
      if (!collapsed.empty()) collapsed.push_back(U' ');
      collapsed += t.substr(i, j - i);
    }
    i = j;
  }
  return to_utf8(lowercase(collapsed));
}

ClipTokenizer::ClipTokenizer(const std::string& vocabulary_path) {
  std::ifstream in(vocabulary_path, std::ios::binary);
  if (!in) throw HostError(vocabulary_path + " is missing: rebuild the bundle with `dcrt build` (it writes the vocabulary)");
  // bytes_to_unicode: printable bytes map to themselves, the others to U+0100 on, in byte order.
  std::vector<int> order;
  for (int b = 0; b < 256; ++b)
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) order.push_back(b);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    byte_symbol_[b] = to_utf8(Text(1, static_cast<char32_t>(printable ? b : 256 + extra)));
    if (!printable) {
      order.push_back(b);
      ++extra;
    }
  }
  std::vector<std::string> vocab;
  for (int b : order) vocab.push_back(byte_symbol_[b]);
  for (int b : order) vocab.push_back(byte_symbol_[b] + "</w>");
  std::string line;
  std::getline(in, line);  // the version line
  constexpr int kMerges = 49152 - 256 - 2;  // the lines SimpleTokenizer keeps: merges[1:49152-256-2+1]
  for (int k = 0; k < kMerges && std::getline(in, line); ++k) {
    const std::vector<std::string> pair = split_fields(line);
    if (pair.size() != 2) throw HostError(vocabulary_path + ": line " + std::to_string(k + 2) + " is not a BPE merge");
    ranks_.emplace(pair[0] + " " + pair[1], k);
    vocab.push_back(pair[0] + pair[1]);
  }
  if (static_cast<int>(ranks_.size()) != kMerges)
    throw HostError(vocabulary_path + " is cut short: rebuild the bundle with `dcrt build`");
  vocab.push_back("<start_of_text>");
  vocab.push_back("<end_of_text>");
  for (size_t k = 0; k < vocab.size(); ++k) encoder_[vocab[k]] = static_cast<int64_t>(k);  // later entries win
  start_ = encoder_.at("<start_of_text>");
  end_ = encoder_.at("<end_of_text>");
}

std::vector<int64_t> ClipTokenizer::bpe(const std::string& token) const {
  if (token == "<start_of_text>" || token == "<end_of_text>") return {encoder_.at(token)};
  std::vector<std::string> word;
  for (unsigned char byte : token) word.push_back(byte_symbol_[byte]);
  word.back() += "</w>";
  while (word.size() > 1) {
    int best = INT_MAX;
    size_t at = 0;
    for (size_t k = 0; k + 1 < word.size(); ++k) {
      const auto it = ranks_.find(word[k] + " " + word[k + 1]);
      if (it != ranks_.end() && it->second < best) best = it->second, at = k;
    }
    if (best == INT_MAX) break;
    const std::string first = word[at], second = word[at + 1];
    std::vector<std::string> merged;
    for (size_t k = 0; k < word.size();) {
      if (word[k] == first && k + 1 < word.size() && word[k + 1] == second) {
        merged.push_back(first + second);
        k += 2;
      } else {
        merged.push_back(word[k++]);
      }
    }
    word = std::move(merged);
  }
  std::vector<int64_t> ids;
  for (const std::string& symbol : word) ids.push_back(encoder_.at(symbol));
  return ids;
}

std::vector<int64_t> ClipTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const Text& word : split_words(to_utf32(clean_prompt(text)))) {
    const std::vector<int64_t> part = bpe(to_utf8(word));
    ids.insert(ids.end(), part.begin(), part.end());
  }
  return ids;
}

std::vector<int64_t> ClipTokenizer::tokens(const std::string& prompt, int64_t length) const {
  std::vector<int64_t> ids{start_};
  const std::vector<int64_t> body = encode(prompt);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(end_);
  if (static_cast<int64_t>(ids.size()) > length) {
    ids.resize(static_cast<size_t>(length));
    ids.back() = end_;
  }
  ids.resize(static_cast<size_t>(length), 0);
  return ids;
}

}  // namespace dcrt_host
