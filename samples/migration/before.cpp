// migration/before.cpp: a typical hand-written thread pool in user code.
//
// An order-pricing service: each order is priced on a worker; the customer
// the current job is for sits in a `thread_local`, set by every job and read
// deep in the call chain (the discount rules, the audit log). The pool is the
// classic std::thread + mutex + condition_variable design found in many code
// bases.
//
// It has the bug such code bases have: the audit entry is written when the
// job starts, before the job sets the customer, so it names whichever
// customer the worker's previous job left behind. The totals are right and
// every test of them passes.
//
// Step 0 of a migration, before changing any declaration: built as
// `migration_detect` (MIGRATION_DETECT defined), the worker loop gets one
// line, a ctxpool::diagnostics::task_scope around each job, and under
// CTXPOOL_DIAGNOSTICS=residue ctxpool reports the audit's read of the plain
// thread_local `current_customer` (the job reads it before writing it, other
// jobs leave it set) and exits 66, in every run, whichever worker each job
// lands on.
//
// migration/after.cpp is the same program moved to ctxpool with the smallest
// diff: see the comment at its top, or `diff -u before.cpp after.cpp`.
//
// Checks the totals against a single-threaded computation; exits non-zero if
// any differs.
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <queue>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifdef MIGRATION_DETECT
#include <ctxpool/diagnostics.hpp>
#endif

class ThreadPool {
 public:
  explicit ThreadPool(std::size_t threads) {
    for (std::size_t i = 0; i < threads; ++i) {
      workers_.emplace_back([this] {
        for (;;) {
          std::function<void()> task;
          {
            std::unique_lock<std::mutex> lock(mutex_);
            condition_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
            if (stop_ && tasks_.empty()) return;
            task = std::move(tasks_.front());
            tasks_.pop();
          }
#ifdef MIGRATION_DETECT
          ctxpool::diagnostics::task_scope job;  // the one line: each job is a task
#endif
          task();
        }
      });
    }
  }

  template <class F>
  auto enqueue(F&& f) -> std::future<decltype(f())> {
    using result = decltype(f());
    auto task = std::make_shared<std::packaged_task<result()>>(std::forward<F>(f));
    std::future<result> future = task->get_future();
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (stop_) throw std::runtime_error("enqueue on stopped ThreadPool");
      tasks_.emplace([task] { (*task)(); });
    }
    condition_.notify_one();
    return future;
  }

  ~ThreadPool() {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      stop_ = true;
    }
    condition_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }

 private:
  std::vector<std::thread> workers_;
  std::queue<std::function<void()>> tasks_;
  std::mutex mutex_;
  std::condition_variable condition_;
  bool stop_ = false;
};

// ---- the application ----------------------------------------------------------

struct order {
  int id;
  std::string customer;
  std::vector<int> cents;  // line items
};

thread_local std::string current_customer;  // who the current job is for

/// Deep in the call chain: the discount depends on the current customer.
int discount_percent() { return current_customer.starts_with("vip-") ? 10 : 0; }

int price_line(int cents) { return cents * (100 - discount_percent()) / 100; }

std::atomic<int> misattributed{0};  // audit entries naming another job's customer

/// The audit log: who the job is for (here only checked, not printed).
void audit(const order& o) {
  if (current_customer != o.customer) ++misattributed;
}

long price_order(const order& o) {
  audit(o);  // the bug: logged before the customer is set
  current_customer = o.customer;
  long total = 0;
  for (int cents : o.cents) total += price_line(cents);
  return total;
}

std::vector<order> make_orders() {
  std::vector<order> orders;
  for (int id = 0; id < 400; ++id) {
    std::string customer = (id % 3 == 0 ? "vip-" : "guest-") + std::to_string(id % 17);
    orders.push_back({id, customer, {100 + id, 250, 999, id * 7}});
  }
  return orders;
}

/// The expected total, computed without any pool or thread-local.
long expected_total(const order& o) {
  const int percent = o.customer.starts_with("vip-") ? 10 : 0;
  long total = 0;
  for (int cents : o.cents) total += cents * (100 - percent) / 100;
  return total;
}

int main() {
  const std::vector<order> orders = make_orders();
  ThreadPool pool(4);
  std::vector<std::future<long>> totals;
  for (const order& o : orders) totals.push_back(pool.enqueue([o] { return price_order(o); }));

  int wrong = 0;
  for (std::size_t i = 0; i < orders.size(); ++i) {
    if (totals[i].get() != expected_total(orders[i])) ++wrong;
  }
  std::printf("priced %zu orders on a hand-written pool, %d wrong\n", orders.size(), wrong);
  std::printf("audit: %d of %zu entries did not name the job's customer\n", misattributed.load(),
              orders.size());
  return wrong == 0 ? 0 : 1;
}
