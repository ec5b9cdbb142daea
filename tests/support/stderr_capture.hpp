// Capturing what a piece of the test process writes to stderr (a default
// exception handler's report, say), to check its text.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <doctest/doctest.h>

namespace ctxpool_test {

/// Runs `body` with file descriptor 2 redirected to a temporary file and
/// returns what was written there. stderr is put back also when `body`
/// throws. Not for concurrent use: descriptor 2 is process-wide.
template <class F>
std::string capture_stderr(F&& body) {
  std::string path = (std::filesystem::temp_directory_path() / "ctxpool_stderr_XXXXXX").string();
  const int fd = ::mkstemp(path.data());
  REQUIRE_MESSAGE(fd >= 0, "cannot create a temporary file for stderr");
  std::fflush(stderr);
  const int saved = ::dup(2);
  REQUIRE(saved >= 0);
  ::dup2(fd, 2);
  struct restore {
    int saved;
    int fd;
    ~restore() {
      std::fflush(stderr);
      ::dup2(saved, 2);
      ::close(saved);
      ::close(fd);
    }
  };
  try {
    restore on_exit{saved, fd};
    std::forward<F>(body)();
  } catch (...) {
    std::filesystem::remove(path);
    throw;
  }
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  std::filesystem::remove(path);
  return text.str();
}

}  // namespace ctxpool_test
