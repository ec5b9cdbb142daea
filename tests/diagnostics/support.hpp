// Helpers shared by the diagnostics tests: a detection session per test case,
// a one-thread hand-written worker, and running a helper program.
#pragma once

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <atomic>
#include <cerrno>
#include <future>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <queue>
#include <source_location>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <ctxpool/diagnostics.hpp>

extern char** environ;

namespace ctxpool_test {

/// Detection on for one test case, findings not printed; at the end the
/// findings are cleared and the previous configuration (the environment's,
/// say) is back.
class detection_session {
 public:
  explicit detection_session(ctxpool::diagnostics::options opts = quiet())
      : previous_(ctxpool::diagnostics::current_options()) {
    ctxpool::diagnostics::enable(std::move(opts));
    ctxpool::diagnostics::clear_findings();
  }
  ~detection_session() {
    ctxpool::diagnostics::clear_findings();
    ctxpool::diagnostics::enable(previous_);  // mode::off disables
  }
  detection_session(const detection_session&) = delete;
  detection_session& operator=(const detection_session&) = delete;

  static ctxpool::diagnostics::options quiet() {
    ctxpool::diagnostics::options opts;
    opts.print = false;
    return opts;
  }

 private:
  ctxpool::diagnostics::options previous_;
};

/// A hand-written worker: one std::thread running queued jobs, each inside a
/// diagnostics::task_scope, in order. The way a team would mark tasks in its
/// own pool.
class worker {
 public:
  worker() : thread_([this] { loop(); }) {}
  ~worker() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    ready_.notify_one();
    thread_.join();
  }
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  /// Runs `job` as a task named `name` on the worker and waits for it.
  void run(std::string name, std::function<void()> job,
           std::source_location site = std::source_location::current()) {
    std::promise<void> finished;
    auto result = finished.get_future();
    {
      std::lock_guard lock(mutex_);
      jobs_.push({std::move(name), site, std::move(job), &finished});
    }
    ready_.notify_one();
    result.get();
  }

  [[nodiscard]] std::thread::id id() const noexcept { return thread_.get_id(); }

 private:
  struct job_entry {
    std::string name;
    std::source_location site;
    std::function<void()> job;
    std::promise<void>* finished;
  };

  void loop() {
    while (true) {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [this] { return done_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job_entry entry = std::move(jobs_.front());
      jobs_.pop();
      lock.unlock();
      {
        ctxpool::diagnostics::task_scope task{entry.name, entry.site};
        entry.job();
      }
      entry.finished->set_value();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::queue<job_entry> jobs_;
  bool done_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

/// What a child process did.
struct child_result {
  int exit_status = -1;  // -1: it did not exit normally
  std::string err;       // its stderr
};

/// A scratch directory for one test case, removed afterwards.
class scratch_dir {
 public:
  scratch_dir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("ctxpool-diag-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
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

/// Runs `program args...` with CTXPOOL_DIAGNOSTICS set to `diagnostics`
/// (unset when empty) and waits for it.
[[nodiscard]] inline child_result run_child(const std::string& program,
                                            std::vector<std::string> args,
                                            const std::optional<std::string>& diagnostics,
                                            const scratch_dir& dir) {
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
  const int spawned = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    result.err = "posix_spawn failed";
    return result;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) result.exit_status = WEXITSTATUS(status);
  result.err = read_file(err_path);
  return result;
}

/// Runs `program scenario`; see above.
[[nodiscard]] inline child_result run_child(const std::string& program, const std::string& scenario,
                                            const std::optional<std::string>& diagnostics,
                                            const scratch_dir& dir) {
  return run_child(program, std::vector<std::string>{scenario}, diagnostics, dir);
}

}  // namespace ctxpool_test
