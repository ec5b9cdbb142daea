// context_lifecycle: who owns a context variable's value, and for how long.
//
// Part 1: a value is owned by the contexts that hold it. Snapshots share it
// (copy_context() copies no values), handles to one context share it, a pool
// task's context shares it while the task runs; it is destroyed exactly when
// the last of them dies. A counting type shows each step.
//
// Part 2: the mistake. A request handler stashes its context in a global
// "debug cache" and forgets it: every request's body now lives as long as the
// cache. The program shows the bodies outliving their requests. Without
// arguments it then clears the cache and exits 0; with `--keep-leak` it leaves
// the cache in place, as the buggy program would, so that
// CTXPOOL_DIAGNOSTICS=residue:leaks=1 reports the contexts and values still
// alive at exit.
//
// Exits non-zero when a count is not what the ownership rules say.
#include <atomic>
#include <cstdio>
#include <future>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <ctxpool/context.hpp>
#include <ctxpool/executor.hpp>

namespace {

/// A value type that counts its live instances (copies included).
class counted {
 public:
  explicit counted(std::string label) : label_(std::move(label)) { live_.fetch_add(1); }
  counted(const counted& other) : label_(other.label_) { live_.fetch_add(1); }
  counted& operator=(const counted&) = default;
  ~counted() { live_.fetch_sub(1); }

  [[nodiscard]] const std::string& label() const noexcept { return label_; }
  [[nodiscard]] static int live() noexcept { return live_.load(); }

 private:
  std::string label_;
  static inline std::atomic<int> live_{0};
};

ctxpool::context_var<counted> session{"session"};
ctxpool::context_var<counted> request_body{"request_body"};

int failures = 0;

/// Prints one step and checks the number of live values after it.
void step(std::string_view what, int expected_live) {
  const int live = counted::live();
  std::printf("  %-64s live values: %d%s\n", std::string(what).c_str(), live,
              live == expected_live ? "" : "   <-- FAIL");
  if (live != expected_live) {
    std::printf("    expected %d\n", expected_live);
    ++failures;
  }
}

void part1_ownership() {
  std::printf("Part 1: a value lives exactly as long as the last context holding it\n");
  ctxpool::thread_pool pool(2);
  step("start", 0);
  {
    ctxpool::context request;  // a new, empty context
    request.run([] { (void)session.set(counted("alice's session")); });
    step("set in a context (the context holds it)", 1);

    ctxpool::context snapshot = request.run([] { return ctxpool::copy_context(); });
    step("copy_context() inside it (shared, not copied)", 1);

    ctxpool::context alias = snapshot;  // a handle: the same context, not a copy
    step("a second handle to the snapshot", 1);

    std::future<std::string> seen =
        snapshot.run([&] { return pool.submit([] { return session.get().label(); }); });
    std::printf("  a pool task submitted from the snapshot saw \"%s\"\n", seen.get().c_str());
    pool.wait();  // the task's own copy of the context is gone once wait() returns
    step("after the pool task finished", 1);

    request = ctxpool::context{};
    step("the original context dropped (snapshot still holds it)", 1);

    snapshot = ctxpool::context{};
    step("one handle to the snapshot dropped (the other still holds it)", 1);
  }
  step("the last handle dropped: the value is released", 0);
  pool.join();
}

// ---- part 2: the mistake ---------------------------------------------------------

/// "Remember recent requests for the debug page" -- never trimmed, never cleared.
/// Deliberately leaked itself, so that nothing releases it before the leak
/// report runs at exit.
struct debug_cache {
  std::mutex mutex;
  std::vector<ctxpool::context> recent;
};
debug_cache& cache = *new debug_cache;

void handle_upload(int id) {
  (void)request_body.set(counted("body of upload " + std::to_string(id)));
  // ... parse, store ...
  std::lock_guard lock(cache.mutex);
  cache.recent.push_back(ctxpool::copy_context());  // the mistake: outlives the request
}

void part2_mistake(bool keep_leak) {
  std::printf("\nPart 2: a context kept alive by mistake\n");
  constexpr int uploads = 5;
  {
    ctxpool::thread_pool pool(2);
    std::vector<std::future<void>> done;
    for (int id = 1; id <= uploads; ++id) done.push_back(pool.submit([id] { handle_upload(id); }));
    for (auto& f : done) f.get();
    pool.join();
  }
  step("all uploads finished, pool joined", uploads);
  std::printf(
      "  %d request bodies outlived their requests: the debug cache holds\n"
      "  %zu contexts, and each context owns its request's values.\n",
      counted::live(), cache.recent.size());
  if (keep_leak) {
    std::printf(
        "  --keep-leak: leaving them in place; CTXPOOL_DIAGNOSTICS=residue:leaks=1\n"
        "  reports what is still alive at exit.\n");
    return;
  }
  {
    std::lock_guard lock(cache.mutex);
    cache.recent.clear();
  }
  step("debug cache cleared", 0);
  std::printf(
      "  (run with --keep-leak under CTXPOOL_DIAGNOSTICS=residue:leaks=1 to see the\n"
      "  leak report the forgotten cache produces)\n");
}

}  // namespace

int main(int argc, char** argv) {
  bool keep_leak = false;
  if (argc == 2 && std::string_view(argv[1]) == "--keep-leak") {
    keep_leak = true;
  } else if (argc != 1) {
    std::fprintf(stderr, "usage: %s [--keep-leak]\n", argv[0]);
    return 2;
  }
  part1_ownership();
  part2_mistake(keep_leak);
  if (failures != 0) {
    std::printf("\nFAIL: %d step(s) did not match\n", failures);
    return 1;
  }
  std::printf("\nOK\n");
  return 0;
}
