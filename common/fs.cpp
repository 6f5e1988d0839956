#include "common/fs.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "common/unique_fd.h"

namespace kforge {
namespace {

Status errno_status(const std::string& what, const std::filesystem::path& path) {
  return io_error(what + " " + path.string() + ": " + std::strerror(errno));
}

}  // namespace

Status atomic_write_file(const std::filesystem::path& path, std::string_view data, unsigned mode) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  ::unlink(tmp.c_str());  // a leftover keeps its old mode: O_CREAT's mode applies only to new files
  UniqueFd fd(
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, static_cast<mode_t>(mode)));
  if (!fd.valid()) return errno_status("cannot create", tmp);
  // A temp file left by an earlier try keeps its old mode: set it before writing.
  if (mode != 0644 && ::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0)
    return errno_status("cannot chmod", tmp);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status("cannot write", tmp);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return errno_status("cannot fsync", tmp);
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_status("cannot rename onto", path);
  std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.valid()) ::fsync(dfd.get());
  return Status();
}

Result<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!std::filesystem::exists(path)) return not_found("no such file: " + path.string());
    return io_error("cannot open " + path.string());
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<std::string> read_named_file(const std::filesystem::path& path, const std::string& what) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return not_found(what + " " + path.string() + " does not exist");
  if (std::string why = not_a_file(path); !why.empty()) {
    return invalid_argument(what + " " + path.string() + " " + why);
  }
  return read_file(path);
}

std::string not_a_file(const std::filesystem::path& path) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (std::filesystem::is_directory(status)) return "is a directory";
  if (!std::filesystem::is_regular_file(status))
    return "is not a regular file (a device, FIFO or socket)";
  return "";
}

Status check_secret_file_mode(const std::filesystem::path& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_status("cannot stat", path);
  if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return invalid_argument(path.string() + ": " + what + " is accessible to other users (mode " +
                            mode + "); chmod 600 (or 640 with the daemon's group) it");
  }
  return Status();
}

Result<std::string> read_secret_file(const std::filesystem::path& path, const std::string& what) {
  auto text = read_named_file(path, what);
  if (!text.ok()) return text.status();
  KF_RETURN_IF_ERROR(check_secret_file_mode(path, what));
  size_t first = text->find_first_not_of(" \t\r\n");
  if (first == std::string::npos)
    return invalid_argument(path.string() + ": " + what + " is empty");
  std::string secret = text->substr(first, text->find_last_not_of(" \t\r\n") - first + 1);
  if (secret.find_first_of("\r\n") != std::string::npos) {
    return invalid_argument(path.string() + ": " + what + " must hold one line");
  }
  return secret;
}

Status ensure_dir(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return io_error("cannot create directory " + path.string() + ": " + ec.message());
  return Status();
}

Status ensure_private_dir(const std::filesystem::path& path) {
  KF_RETURN_IF_ERROR(ensure_dir(path));
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_status("cannot stat", path);
  if ((st.st_mode & 077) != 0 && ::chmod(path.c_str(), 0700) != 0)
    return errno_status("cannot chmod 0700", path);
  return Status();
}

Status ensure_private_file(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return errno_status("cannot open", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_status("cannot stat", path);
  if ((st.st_mode & 077) != 0 && ::fchmod(fd.get(), 0600) != 0)
    return errno_status("cannot chmod 0600", path);
  return Status();
}

Result<std::string> random_hex_secret(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error(std::string("getrandom: ") + std::strerror(errno));
    }
    got += static_cast<size_t>(n);
  }
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : raw) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

std::string random_hex_id() {
  unsigned char bytes[16];
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  if (!urandom.read(reinterpret_cast<char*>(bytes), sizeof bytes)) {
    std::random_device rd;
    for (auto& b : bytes) b = static_cast<unsigned char>(rd());
  }
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

}  // namespace kforge
