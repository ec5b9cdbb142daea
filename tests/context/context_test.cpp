// Tests of <ctxpool/context.hpp>: contextvars semantics, snapshots, run, tokens,
// scope guards, threads, and value lifetime.
#include <ctxpool/context.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using ctxpool::context;
using ctxpool::context_var;
using ctxpool::copy_context;

// Counts live instances so that tests can see exactly when a value dies.
struct counted {
  static inline std::atomic<int> live{0};
  int value;
  explicit counted(int v) : value(v) { ++live; }
  counted(const counted& other) : value(other.value) { ++live; }
  ~counted() { --live; }
};

// Runs `f` in a brand-new empty context so that tests do not see each other's
// values through the thread's base context.
template <class F>
void isolated(F&& f) {
  context{}.run(std::forward<F>(f));
}

}  // namespace

TEST_CASE(
    "get returns the set value, else the default, else throws lookup_error naming the variable") {
  isolated([] {
    context_var<std::string> request_id{"request_id"};
    context_var<int> retries{"retries", 3};

    CHECK(retries.get() == 3);
    try {
      (void)request_id.get();
      FAIL("get() without value or default must throw");
    } catch (const ctxpool::lookup_error& e) {
      CHECK(std::string(e.what()).find("request_id") != std::string::npos);
    }
    CHECK_THROWS_AS((void)request_id.get(), std::out_of_range);  // derives from the standard type

    auto tok = request_id.set("abc");
    auto tok2 = retries.set(5);
    CHECK(request_id.get() == "abc");
    CHECK(retries.get() == 5);
  });
}

TEST_CASE("get_or never throws and its fallback beats the variable's default") {
  isolated([] {
    context_var<int> plain{"plain"};
    context_var<int> with_default{"with_default", 3};
    CHECK(plain.get_or(7) == 7);
    CHECK(with_default.get_or(7) == 7);  // Python: var.get(7) returns 7 when unset
    (void)with_default.get();            // caches the default; must not leak into get_or
    CHECK(with_default.get_or(8) == 8);
    auto tok = with_default.set(1);
    CHECK(with_default.get_or(8) == 1);
  });
}

TEST_CASE("a variable copies its name, so it may be built from a temporary") {
  std::unique_ptr<context_var<int>> var;
  {
    std::string name = "temporary_name";
    var = std::make_unique<context_var<int>>(name + "_x");
    name.assign(100, 'z');
  }
  CHECK(var->name() == "temporary_name_x");
}

TEST_CASE("reset restores the previous value, and removes a value that was not there") {
  isolated([] {
    context_var<int> var{"var"};
    auto first = var.set(1);
    CHECK_FALSE(first.old_value().has_value());
    auto second = var.set(2);
    CHECK(second.old_value() == 1);
    CHECK(var.get() == 2);
    var.reset(second);
    CHECK(var.get() == 1);
    var.reset(first);
    CHECK_FALSE(copy_context().contains(var));
    CHECK(var.get_or(-1) == -1);
    CHECK(first.used());
    CHECK(&first.var() == &var);
  });
}

TEST_CASE("token misuse throws token_error saying which misuse it was") {
  isolated([] {
    context_var<int> a{"a"};
    context_var<int> b{"b"};

    SUBCASE("used twice") {
      auto tok = a.set(1);
      a.reset(tok);
      try {
        a.reset(tok);
        FAIL("second reset must throw");
      } catch (const ctxpool::token_error& e) {
        CHECK(e.why() == ctxpool::token_error::reason::already_used);
        CHECK(std::string(e.what()).find("already been used") != std::string::npos);
      }
    }
    SUBCASE("reset through another variable") {
      auto tok = a.set(1);
      // token<int> of `a` handed to `b`: same T, different variable.
      try {
        b.reset(tok);
        FAIL("reset through another variable must throw");
      } catch (const ctxpool::token_error& e) {
        CHECK(e.why() == ctxpool::token_error::reason::other_variable);
        CHECK(std::string(e.what()).find("different context_var") != std::string::npos);
      }
      CHECK(a.get() == 1);  // nothing changed
      a.reset(tok);         // and the token is still good for its own variable
    }
    SUBCASE("reset in another context") {
      auto tok = a.set(1);
      context other = copy_context();
      other.run([&] {
        try {
          a.reset(tok);
          FAIL("reset in another context must throw");
        } catch (const ctxpool::token_error& e) {
          CHECK(e.why() == ctxpool::token_error::reason::other_context);
          CHECK(std::string(e.what()).find("different context") != std::string::npos);
        }
      });
      a.reset(tok);
    }
    SUBCASE("a moved-from token is spent") {
      auto tok = a.set(1);
      auto moved = std::move(tok);
      CHECK_THROWS_AS(a.reset(tok), ctxpool::token_error);
      a.reset(moved);
    }
  });
}

TEST_CASE("copy_context is a snapshot: later sets in either copy are invisible to the other") {
  isolated([] {
    context_var<int> var{"var"};
    auto tok = var.set(1);
    context snapshot = copy_context();
    auto tok2 = var.set(2);
    CHECK(snapshot.get(var) == 1);
    snapshot.run([&] {
      CHECK(var.get() == 1);
      auto inner = var.set(3);
      CHECK(var.get() == 3);
    });
    CHECK(var.get() == 2);
    CHECK(snapshot.get(var) == 3);
  });
}

TEST_CASE("run forwards arguments and the result, and keeps sets in the context for later runs") {
  context ctx;
  context_var<std::string> name{"name"};
  auto move_only = std::make_unique<int>(41);
  int result = ctx.run(
      [&](std::unique_ptr<int> p, int add) {
        (void)name.set("inside");
        return *p + add;
      },
      std::move(move_only), 1);
  CHECK(result == 42);
  CHECK(name.get_or("outside") == "outside");
  CHECK(ctx.run([&] { return name.get(); }) == "inside");
  CHECK(ctx.get(name) == "inside");

  int value = 5;
  int& ref = ctx.run([&]() -> int& { return value; });
  CHECK(&ref == &value);  // references are forwarded, not copied
}

TEST_CASE("run propagates exceptions and always restores the previous context") {
  context_var<int> var{"var"};
  context outer;
  context inner;
  outer.run([&] {
    auto tok = var.set(1);
    CHECK_THROWS_WITH_AS(inner.run([&] {
      (void)var.set(2);
      throw std::runtime_error("boom");
    }),
                         "boom", std::runtime_error);
    CHECK(var.get() == 1);
    CHECK_FALSE(inner.entered());
    CHECK(inner.get(var) == 2);  // the set before the throw stays in `inner`
  });
}

TEST_CASE("contexts nest, and entering an entered context throws context_error") {
  context a;
  context b;
  context_var<int> var{"var"};
  a.run([&] {
    (void)var.set(1);
    CHECK(a.entered());
    b.run([&] {
      CHECK(var.get_or(0) == 0);  // b is empty
      (void)var.set(2);
      CHECK_THROWS_AS(a.run([] {}), ctxpool::context_error);  // a is entered further up
      CHECK_THROWS_AS(b.run([] {}), ctxpool::context_error);  // b is entered right here
    });
    CHECK(var.get() == 1);
  });
  CHECK_FALSE(a.entered());
  context alias = a;  // copies of a handle refer to the same context
  CHECK(alias == a);
  CHECK_FALSE(alias == b);
  CHECK(alias.get(var) == 1);
}

TEST_CASE("entering a context that another thread has entered throws context_error") {
  context shared;
  std::atomic<int> stage{0};
  std::thread holder([&] {
    shared.run([&] {
      stage = 1;
      while (stage.load() != 2) std::this_thread::yield();
    });
  });
  while (stage.load() != 1) std::this_thread::yield();
  CHECK_THROWS_AS(shared.run([] {}), ctxpool::context_error);
  stage = 2;
  holder.join();
  CHECK_NOTHROW(shared.run([] {}));
}

TEST_CASE("a context can be read as a mapping without entering it") {
  context_var<int> a{"a"};
  context_var<int> b{"b", 9};
  context_var<std::string> c{"c"};
  context ctx;
  ctx.run([&] {
    (void)a.set(1);
    (void)c.set("x");
  });
  CHECK(ctx.size() == 2);
  CHECK_FALSE(ctx.empty());
  CHECK(ctx.contains(a));
  CHECK_FALSE(ctx.contains(b));  // a default is not a value in the mapping
  CHECK(ctx.find(a) == 1);
  CHECK_FALSE(ctx.find(b).has_value());
  CHECK(ctx.get(c) == "x");
  CHECK_THROWS_AS((void)ctx.get(b), ctxpool::lookup_error);
  CHECK(context{}.empty());
}

TEST_CASE("snapshots share structure: many variables, then independent edits") {
  isolated([] {
    std::vector<std::unique_ptr<context_var<int>>> vars;
    std::vector<ctxpool::token<int>> tokens;
    for (int i = 0; i < 2000; ++i) {
      vars.push_back(std::make_unique<context_var<int>>(std::string("v") += std::to_string(i)));
      tokens.push_back(vars.back()->set(i));
    }
    context snapshot = copy_context();
    CHECK(snapshot.size() == 2000);
    for (int i = 0; i < 2000; i += 2) (void)vars[i]->set(-i);
    for (int i = 1999; i >= 0; i -= 3) vars[i]->reset(tokens[i]);
    for (int i = 0; i < 2000; ++i) {
      CHECK(snapshot.get(*vars[i]) == i);  // untouched by the edits above
      const bool reset = (1999 - i) % 3 == 0;
      const int expected = reset ? -1 : (i % 2 == 0 ? -i : i);
      REQUIRE(vars[i]->get_or(-1) == expected);
    }
    CHECK(copy_context().size() == static_cast<std::size_t>(2000 - 667));
  });
}

TEST_CASE("a new std::thread starts in an empty context") {
  context_var<int> var{"var"};
  context ctx;
  ctx.run([&] {
    (void)var.set(1);
    int seen = -2;
    std::size_t size = 99;
    std::thread([&] {
      seen = var.get_or(-1);
      size = copy_context().size();
    }).join();
    CHECK(seen == -1);
    CHECK(size == 0);
  });
}

TEST_CASE("two threads setting the same variable never see each other's values") {
  context_var<int> var{"var"};
  constexpr int rounds = 20000;
  std::atomic<int> mismatches{0};
  auto body = [&](int self) {
    for (int i = 0; i < rounds; ++i) {
      auto tok = var.set(self * rounds + i);
      if (var.get() != self * rounds + i) ++mismatches;
      var.reset(tok);
      if (var.get_or(-1) != -1) ++mismatches;
    }
  };
  std::thread t1(body, 1);
  std::thread t2(body, 2);
  t1.join();
  t2.join();
  CHECK(mismatches == 0);
}

TEST_CASE("a value is destroyed exactly when the last context holding it goes away") {
  context_var<counted> var{"counted"};
  REQUIRE(counted::live == 0);
  {
    context first;
    first.run([&] { (void)var.set(counted{1}); });
    CHECK(counted::live == 1);
    {
      context second = first.run([] { return copy_context(); });
      first.run([&] { (void)var.set(counted{2}); });
      CHECK(counted::live == 2);  // `second` still holds 1
      CHECK(second.get(var).value == 1);
    }
    CHECK(counted::live == 1);  // only `first`'s value 2 is left
  }
  CHECK(counted::live == 0);
}

TEST_CASE("snapshots taken in a loop keep a value no longer than the context and the snapshots") {
  // A thread capturing one context again and again takes references to its
  // map in batches (as a pool's submitter does); the spare ones must not
  // outlive the context's own hold on the map.
  using ctxpool::detail::captured_context;
  context_var<counted> var{"counted"};
  REQUIRE(counted::live == 0);
  context ctx;
  ctx.run([&] {
    (void)var.set(counted{1});
    std::vector<captured_context> snapshots;
    for (int i = 0; i < 300; ++i) snapshots.push_back(captured_context::capture());
    (void)var.set(counted{2});  // the map holding 1 is now only the snapshots'
    CHECK(counted::live == 2);
    snapshots.clear();
    CHECK(counted::live == 1);
    for (int i = 0; i < 300; ++i) (void)captured_context::capture();
    CHECK(counted::live == 1);
  });
  CHECK(counted::live == 1);  // ctx still holds 2
  ctx = context{};
  CHECK(counted::live == 0);

  // The same on a thread that ends while its base context holds the value.
  std::thread thread([&] {
    (void)var.set(counted{3});
    for (int i = 0; i < 300; ++i) (void)captured_context::capture();
    CHECK(counted::live == 1);
  });
  thread.join();
  CHECK(counted::live == 0);
}

TEST_CASE("a token keeps the previous value alive until it is destroyed") {
  context_var<counted> var{"counted"};
  context ctx;
  ctx.run([&] {
    auto first = var.set(counted{1});
    {
      auto second = var.set(counted{2});
      CHECK(counted::live == 2);  // 1 is held by `second` as its old value
      auto third = var.set(counted{3});
      CHECK(counted::live == 3);
      var.reset(third);
      CHECK(counted::live == 2);  // 3 had only the map; 2 is back in it, 1 is in `second`
    }
    CHECK(counted::live == 1);  // `second` is gone and with it the last hold on 1
  });
  CHECK(counted::live == 1);  // `ctx` still holds 2
}

TEST_CASE("values set inside run that throws are released with the context") {
  context_var<counted> var{"counted"};
  {
    context ctx;
    CHECK_THROWS(ctx.run([&] {
      (void)var.set(counted{7});
      throw std::runtime_error("fail after set");
    }));
    CHECK(counted::live == 1);
    CHECK(ctx.get(var).value == 7);
  }
  CHECK(counted::live == 0);
}

TEST_CASE("context_scope enters a context for a block and leaves it on every path") {
  context_var<int> var{"var"};
  context ctx;
  ctx.run([&] { (void)var.set(5); });
  CHECK(var.get_or(0) == 0);
  {
    ctxpool::context_scope scope{ctx};
    CHECK(var.get() == 5);
    CHECK(ctx.entered());
    CHECK_THROWS_AS(ctxpool::context_scope{ctx}, ctxpool::context_error);
  }
  CHECK_FALSE(ctx.entered());
  try {
    ctxpool::context_scope scope{ctx};
    throw 1;
  } catch (int) {
  }
  CHECK_FALSE(ctx.entered());
  CHECK(var.get_or(0) == 0);
}

TEST_CASE("set_scope sets a variable for a block and restores it on exit, also on exceptions") {
  isolated([] {
    context_var<std::string> user{"user"};
    auto base = user.set("alice");
    {
      ctxpool::set_scope guard{user, "bob"};
      CHECK(user.get() == "bob");
      {
        ctxpool::set_scope inner{user, std::string("carol")};
        CHECK(user.get() == "carol");
      }
      CHECK(user.get() == "bob");
    }
    CHECK(user.get() == "alice");
    try {
      ctxpool::set_scope guard{user, "mallory"};
      throw std::runtime_error("x");
    } catch (const std::runtime_error&) {
    }
    CHECK(user.get() == "alice");
  });
}

TEST_CASE("large values are shared, not copied, through shared_ptr<const T>") {
  struct big {
    std::vector<int> data = std::vector<int>(1000, 7);
  };
  context_var<std::shared_ptr<const big>> var{"big"};
  context ctx;
  ctx.run([&] { (void)var.set(std::make_shared<const big>()); });
  auto a = ctx.run([&] { return var.get(); });
  auto b = ctx.run([&] { return copy_context(); }).get(var);
  CHECK(a.get() == b.get());
  CHECK(a->data.size() == 1000);
}

TEST_CASE("overwriting never changes what a snapshot or a token sees") {
  isolated([] {
    std::vector<std::unique_ptr<context_var<int>>> others;
    std::vector<ctxpool::token<int>> keep;
    for (int i = 0; i < 100; ++i) {  // deep enough that values sit below the root node
      others.push_back(std::make_unique<context_var<int>>(std::string("o") += std::to_string(i)));
      keep.push_back(others.back()->set(i));
    }
    context_var<int>& var = *others[77];
    auto t2 = var.set(1000);
    CHECK(t2.old_value() == 77);
    context snapshot = copy_context();
    auto t3 = var.set(2000);
    CHECK(snapshot.get(var) == 1000);
    CHECK(var.get() == 2000);
    var.reset(t3);
    CHECK(var.get() == 1000);
    CHECK(t3.old_value() == 1000);
    var.reset(t2);
    CHECK(var.get() == 77);
    CHECK(t2.old_value() == 77);
    CHECK(snapshot.get(var) == 1000);
    for (int i = 0; i < 100; ++i) CHECK(snapshot.get(*others[i]) == (i == 77 ? 1000 : i));
  });
}
