// Helpers of the diagnostics tests: a detection session per test case and a
// one-thread hand-written worker. Running a helper program (run_child,
// scratch_dir) is shared by every test folder: support/child_process.hpp.
#pragma once

#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <queue>
#include <source_location>
#include <string>
#include <thread>

#include <ctxpool/diagnostics.hpp>

#include "support/child_process.hpp"

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

}  // namespace ctxpool_test
