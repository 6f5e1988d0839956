// SHA-256 (FIPS 180-4): content hashes and cache keys, computed by OpenSSL's libcrypto.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace kforge {

// An incremental SHA-256. Feed bytes with update(), then call digest() or hex_digest() once.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void update(std::string_view data);
  // REQUIRES: neither digest() nor hex_digest() has been called on this object before.
  std::array<uint8_t, 32> digest();
  // The digest as 64 lowercase hex digits.
  std::string hex_digest();

 private:
  struct Ctx;  // OpenSSL's EVP_MD_CTX
  std::unique_ptr<Ctx> ctx_;
};

// The SHA-256 of `data` as 64 lowercase hex digits.
std::string sha256_hex(std::string_view data);

}  // namespace kforge
