// Small filesystem helpers with Status errors.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "common/status.h"

namespace kforge {

// Writes `data` to `path` atomically: a temp file beside it, fsync, rename, fsync of the
// directory. A crash leaves either the old content or the new, never a mix. The file gets
// `mode` (before the umask); secrets and state pass 0600.
Status atomic_write_file(const std::filesystem::path& path, std::string_view data,
                         unsigned mode = 0644);

// Reads a whole file. not_found when it does not exist.
Result<std::string> read_file(const std::filesystem::path& path);

// Reads a file a person named (a config or campaign file): not_found "<what> <path> does not
// exist", invalid_argument when it is a directory or not a regular file (not_a_file).
Result<std::string> read_named_file(const std::filesystem::path& path, const std::string& what);

// Why the existing `path` cannot be read as a file's text: "is a directory", "is not a
// regular file (a device, FIFO or socket)"; "" for a regular file or a link to one. Reading
// /dev/zero or a FIFO would never end.
std::string not_a_file(const std::filesystem::path& path);

// invalid_argument when other users may read or write the file `path` holds a secret in (its
// mode lacks 0006 clear), naming the file, `what` it is and its mode; io_error when it cannot
// be checked. Group access is the owner's choice (0640 with a daemon's group).
Status check_secret_file_mode(const std::filesystem::path& path, const std::string& what);

// Reads a secret of one line (an LLM API key) from `path`, surrounding white space trimmed,
// after check_secret_file_mode. not_found when missing; invalid_argument when empty.
Result<std::string> read_secret_file(const std::filesystem::path& path, const std::string& what);

// Creates `path` and its parents if missing; an error names the directory.
Status ensure_dir(const std::filesystem::path& path);

// Creates `path` and its parents if missing; `path` itself is made 0700 (owner only), also
// when it already existed with wider permissions. For state directories (the coordinator's
// data directory, the agent's state directory).
Status ensure_private_dir(const std::filesystem::path& path);

// Makes the file `path` 0600, creating it empty if missing (so that a library that creates it
// later, SQLite, finds it private). An error names the file.
Status ensure_private_file(const std::filesystem::path& path);

// `bytes` random bytes (from getrandom/urandom) as 2*bytes lowercase hex digits; for secrets.
Result<std::string> random_hex_secret(size_t bytes);

// A random 128-bit identifier as 32 lowercase hex digits (from /dev/urandom).
std::string random_hex_id();

}  // namespace kforge
