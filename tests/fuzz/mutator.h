// A small deterministic mutator for the plain fuzz driver (driver.cpp) and the peer fuzz
// test (tests/peer_fuzz_test.cpp): the same seed gives the same inputs on every platform.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace kforge::fuzz {

// splitmix64: small, and the same sequence on every platform.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
};

// Bytes and tokens that mean something to one of the formats fuzzed: msgpack type markers
// (nil, uint64, int64, str32, array32, map16/32, ext), JSON and TOML punctuation and
// boundary numbers.
inline const std::vector<std::string>& tokens() {
  // clang-format off
  static const std::vector<std::string> t = {
      std::string(1, '\0'), "\xc0", "\xc2", "\xcf", "\xd3", "\xdb", "\xdd", "\xde", "\xdf", "\xc7",
      "\x7f", "\x80", "\xff", "{", "}", "[", "]", "[[ops]]", "[ops.sweep]", ",", "=", ":", "\"",
      "'''", "\n", "null", "true", "-1", "0", "4294967301", "18446744073709551616",
      "-9223372036854775809", "1e999", "nan", "inf", "\\u0000", "\\ud800", "/", "..", "%00"};
  // clang-format on
  return t;
}

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_{seed} {}
  size_t below(size_t n) { return rng_.below(n); }

  // One to four mutations of a corpus input, picked at random. REQUIRES: !corpus.empty().
  std::string mutated(const std::vector<std::string>& corpus) {
    std::string s = corpus[rng_.below(corpus.size())];
    for (size_t m = 1 + rng_.below(4); m > 0; --m) mutate(s, corpus);
    return s;
  }

  // One mutation of `s`; a splice takes its tail from a corpus input.
  void mutate(std::string& s, const std::vector<std::string>& corpus) {
    Rng& rng = rng_;
    switch (rng.below(8)) {
      case 0:  // flip a bit
        if (!s.empty()) s[rng.below(s.size())] ^= static_cast<char>(1u << rng.below(8));
        break;
      case 1:  // set a byte
        if (!s.empty()) s[rng.below(s.size())] = static_cast<char>(rng.next());
        break;
      case 2: {  // erase a range
        if (s.empty()) break;
        size_t at = rng.below(s.size());
        s.erase(at, 1 + rng.below(std::min<size_t>(s.size() - at, 16)));
        break;
      }
      case 3: {  // insert random bytes
        std::string bytes(1 + rng.below(8), '\0');
        for (char& c : bytes) c = static_cast<char>(rng.next());
        s.insert(rng.below(s.size() + 1), bytes);
        break;
      }
      case 4: {  // copy a range of the input elsewhere in it
        if (s.empty()) break;
        size_t at = rng.below(s.size());
        std::string chunk = s.substr(at, 1 + rng.below(32));
        s.insert(rng.below(s.size() + 1), chunk);
        break;
      }
      case 5: {  // splice: this input's head, another's tail
        const std::string& other = corpus[rng.below(corpus.size())];
        s = s.substr(0, rng.below(s.size() + 1)) + other.substr(rng.below(other.size() + 1));
        break;
      }
      case 6: {  // insert or overwrite with a token
        const std::string& tok = tokens()[rng.below(tokens().size())];
        size_t at = rng.below(s.size() + 1);
        if (rng.below(2) == 0) {
          s.insert(at, tok);
        } else {
          s.replace(at, std::min(tok.size(), s.size() - at), tok);
        }
        break;
      }
      default:  // truncate
        s.resize(rng.below(s.size() + 1));
        break;
    }
  }

 private:
  Rng rng_;
};

}  // namespace kforge::fuzz
