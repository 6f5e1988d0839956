// SHA-256 (FIPS 180-4): content hashes and cache keys.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kforge {

// An incremental SHA-256. Feed bytes with update(), then call digest() or hex_digest() once.
class Sha256 {
 public:
  Sha256();
  void update(std::string_view data);
  // REQUIRES: neither digest() nor hex_digest() has been called on this object before.
  std::array<uint8_t, 32> digest();
  // The digest as 64 lowercase hex digits.
  std::string hex_digest();

 private:
  void compress(const uint8_t* blocks, size_t count);  // 64 bytes each

  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buffer_;
  size_t buffered_ = 0;   // bytes waiting in buffer_
  uint64_t length_ = 0;   // message length so far, in bytes
};

// The SHA-256 of `data` as 64 lowercase hex digits.
std::string sha256_hex(std::string_view data);

}  // namespace kforge
