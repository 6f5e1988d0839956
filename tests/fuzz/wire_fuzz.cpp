// The wire codec (common/protocol.h): every message decoder, on any bytes a peer can send.
// decode never throws or crashes; a frame it accepts encodes again, and that encoding
// decodes to a message that encodes to the same bytes (the codec round-trips what it
// accepts). A result's verdict document, which the coordinator reads from result_json, is
// parsed too.
#include <cstdint>
#include <string_view>
#include <variant>

#include "common/protocol.h"
#include "common/verify_result.h"
#include "tests/fuzz/fuzz.h"

using namespace kforge;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto frame = proto::decode(bytes);
  if (!frame.ok()) {
    if (frame.status().message().empty()) fuzz::fuzz_fail("a refused frame without a reason");
    return 0;
  }
  if (frame->version != proto::kProtocolVersion) return 0;  // body left alone, by contract
  if (proto::type_of(frame->message) != frame->type)
    fuzz::fuzz_fail("decoded type differs from 't'");
  std::string once = proto::encode(frame->message);
  auto again = proto::decode(once);
  if (!again.ok())
    fuzz::fuzz_fail("an accepted frame re-encodes to one decode refuses: " +
                    again.status().message());
  if (proto::encode(again->message) != once)
    fuzz::fuzz_fail("encode(decode(encode(m))) != encode(m)");
  if (const auto* result = std::get_if<proto::JobResult>(&frame->message)) {
    (void)to_json(verify_result_from_text(result->result_json));
    if (result->verify) (void)to_json(*result->verify);
  }
  return 0;
}
