// task_scope: what a pool does around each task, for hand-written worker loops.
#include <ctxpool/diagnostics/task_scope.hpp>

#include <ctxpool/diagnostics.hpp>

namespace ctxpool::diagnostics {

task_scope::task_scope(std::string_view name, std::source_location submit_site)
    : context_(detail::captured_context::capture(), /*continuation=*/false),
      name_(name),
      end_{task_info{0, submit_site, name_}, pool_observer()} {
  if (end_.observer != nullptr) {
    end_.info.id = next_task_id();
    end_.observer->on_task_begin(end_.info);
  }
}

}  // namespace ctxpool::diagnostics
