// Tests of <ctxpool/hooks.hpp>: installing the residue observer, and the
// no-op defaults of task_observer.
#include <ctxpool/hooks.hpp>

#include <doctest/doctest.h>

#include <memory>

namespace {

struct minimal_observer final : ctxpool::residue_observer {
  void on_read_first(const ctxpool::slot_view&, std::source_location) noexcept override {}
  void on_left_dirty(const ctxpool::slot_view&, std::source_location) noexcept override {}
  void on_watched_residue(const ctxpool::slot_view&) noexcept override {}
};

}  // namespace

TEST_CASE("set_residue_observer installs and removes the process-wide observer") {
  REQUIRE(ctxpool::get_residue_observer() == nullptr);
  minimal_observer observer;
  ctxpool::set_residue_observer(&observer);
  CHECK(ctxpool::get_residue_observer() == &observer);
  ctxpool::set_residue_observer(nullptr);
  CHECK(ctxpool::get_residue_observer() == nullptr);
}

TEST_CASE("a task_observer need only override what it uses") {
  struct counting final : ctxpool::task_observer {
    int begun = 0;
    void on_task_begin(const ctxpool::task_info& task) noexcept override { begun += task.id == 7; }
  } observer;
  ctxpool::task_observer& base = observer;
  const ctxpool::task_info task{7, std::source_location::current(), "named"};
  base.on_thread_start(0);
  base.on_task_begin(task);
  base.on_task_end(task);
  base.on_thread_stop(0);
  CHECK(observer.begun == 1);
  CHECK(task.name == "named");
}
