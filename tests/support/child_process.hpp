// Running a child process from a test and collecting what it did: a helper
// program with a given environment (run_child) or a function in a forked copy
// of the test (run_forked), each waited for at most a bound, plus the scratch
// directory their output goes to.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace ctxpool_test {

/// How long a child process may run before it is killed as hung: far above
/// what any child needs, also in the sanitizer builds on a loaded machine.
inline constexpr std::chrono::seconds child_bound{300};

/// What a child process did.
struct child_result {
  int exit_status = -1;  ///< -1: it did not exit normally (see term_signal)
  int term_signal = 0;   ///< the signal that ended it, 0 if none
  std::string err;       ///< its stderr (run_forked: stdout and stderr)
};

/// A scratch directory for one test case, removed afterwards.
class scratch_dir {
 public:
  scratch_dir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("ctxpool-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~scratch_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

[[nodiscard]] inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

namespace detail {

/// Waits for child `pid` at most `bound`; a child still running then is
/// killed and reported as hung in `result.err`, so the test fails with a
/// reason instead of waiting forever. Polls: waitpid has no timeout.
inline void wait_for_child(pid_t pid, child_result& result, std::chrono::seconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) {
      result.err += "[ctxpool_test] waitpid failed\n";
      return;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      result.err += "[ctxpool_test] the child did not finish within " +
                    std::to_string(bound.count()) + " s (a hang) and was killed\n";
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (WIFEXITED(status)) result.exit_status = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
}

}  // namespace detail

/// Runs `program args...` with CTXPOOL_DIAGNOSTICS set to `diagnostics`
/// (unset when empty), stdout discarded and stderr collected in `dir`, and
/// waits for it (at most `bound`).
[[nodiscard]] inline child_result run_child(const std::string& program,
                                            std::vector<std::string> args,
                                            const std::optional<std::string>& diagnostics,
                                            const scratch_dir& dir,
                                            std::chrono::seconds bound = child_bound) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).starts_with("CTXPOOL_DIAGNOSTICS=")) continue;
    env_strings.emplace_back(*e);
  }
  if (diagnostics) env_strings.push_back("CTXPOOL_DIAGNOSTICS=" + *diagnostics);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  const std::string err_path = dir.file("child-stderr.txt");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  std::string program_arg = program;
  std::vector<char*> argv{program_arg.data()};
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  child_result result;
  const int spawned =
      ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    result.err = "posix_spawn failed";
    return result;
  }
  detail::wait_for_child(pid, result, bound);
  result.err = read_file(err_path) + result.err;
  return result;
}

/// Runs `program scenario`; see above.
[[nodiscard]] inline child_result run_child(const std::string& program, const std::string& scenario,
                                            const std::optional<std::string>& diagnostics,
                                            const scratch_dir& dir) {
  return run_child(program, std::vector<std::string>{scenario}, diagnostics, dir);
}

/// Runs `body` in a forked copy of the test process, its stdout and stderr
/// collected in `dir`, and waits for it (at most `bound`); the child exits
/// with status 0 when `body` returns. For behaviour that ends a process
/// (std::terminate, abort). Fork only while the test has no other thread:
/// the child gets only the forking one.
template <class F>
[[nodiscard]] child_result run_forked(F&& body, const scratch_dir& dir,
                                      std::chrono::seconds bound = child_bound) {
  const std::string out_path = dir.file("forked-output.txt");
  child_result result;
  const int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    result.err = "cannot create " + out_path;
    return result;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    result.err = "fork failed";
    return result;
  }
  if (pid == 0) {
    std::signal(SIGABRT, SIG_DFL);  // the test framework's crash handler stays in the parent
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    body();
    ::_exit(0);
  }
  ::close(fd);
  detail::wait_for_child(pid, result, bound);
  result.err = read_file(out_path) + result.err;
  return result;
}

}  // namespace ctxpool_test
