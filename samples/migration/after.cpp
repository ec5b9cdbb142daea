// migration/after.cpp: migration/before.cpp moved to ctxpool, smallest diff.
//
// What changed (`diff -u before.cpp after.cpp`):
//   - the hand-written ThreadPool class is gone: #include <ctxpool/executor.hpp>;
//   - `ThreadPool pool(4)` -> `ctxpool::thread_pool pool(4)`,
//     `pool.submit(...)` -> `pool.submit(...)` (same future);
//   - `thread_local std::string current_customer` ->
//     `ctxpool::thread_local_var<std::string> current_customer{"current_customer"}`,
//     assigned with `.set(...)`, read with `.value()`.
// Nothing else. What it buys: each job's value is wiped when the job ends,
// so a job that forgets to set it finds nothing instead of the previous
// customer's discount, and CTXPOOL_DIAGNOSTICS=residue reports such a job in
// CI. (The next step, not taken here: make the customer a
// ctxpool::context_var set by the code that submits the order; it then
// follows the job, and any work the job submits, without a set in every job.)
//
// Checks the totals against a single-threaded computation; exits non-zero if
// any differs.
#include <cstdio>
#include <future>
#include <string>
#include <vector>

#include <ctxpool/executor.hpp>
#include <ctxpool/thread_local.hpp>

// ---- the application ----------------------------------------------------------

struct order {
  int id;
  std::string customer;
  std::vector<int> cents;  // line items
};

ctxpool::thread_local_var<std::string> current_customer{"current_customer"};  // the job's customer

/// Deep in the call chain: the discount depends on the current customer.
int discount_percent() { return current_customer.value().starts_with("vip-") ? 10 : 0; }

int price_line(int cents) { return cents * (100 - discount_percent()) / 100; }

long price_order(const order& o) {
  current_customer.set(o.customer);  // every job sets it first
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
  ctxpool::thread_pool pool(4);
  std::vector<std::future<long>> totals;
  for (const order& o : orders) totals.push_back(pool.submit([o] { return price_order(o); }));

  int wrong = 0;
  for (std::size_t i = 0; i < orders.size(); ++i) {
    if (totals[i].get() != expected_total(orders[i])) ++wrong;
  }
  std::printf("priced %zu orders on ctxpool::thread_pool, %d wrong\n", orders.size(), wrong);
  return wrong == 0 ? 0 : 1;
}
