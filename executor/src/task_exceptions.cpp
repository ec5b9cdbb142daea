// The exceptions of posted tasks and Asio handlers: the installed handler,
// else a report naming the exception and the task's submit site.
#include <ctxpool/detail/task_exceptions.hpp>

#include <cstdio>
#include <string>
#include <typeinfo>

#include <ctxpool/detail/demangle.hpp>

namespace ctxpool::detail {

namespace {

std::string exception_description(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return demangle(typeid(e)) + ": " + e.what();
  } catch (...) {
    return "an exception not derived from std::exception";
  }
}

/// The default exception handler: report and keep running.
void print_task_exception(const std::exception_ptr& error, const task_info& info) noexcept {
  try {
    const std::string what = exception_description(error);
    if (info.submit_site.line() != 0) {
      std::fprintf(stderr,
                   "ctxpool: task submitted at %s:%u (%s) threw %s; the pool keeps running "
                   "(install a handler with thread_pool::set_exception_handler)\n",
                   info.submit_site.file_name(), static_cast<unsigned>(info.submit_site.line()),
                   info.submit_site.function_name(), what.c_str());
    } else {
      std::fprintf(stderr,
                   "ctxpool: an Asio handler run on the pool threw %s; the pool keeps running "
                   "(install a handler with thread_pool::set_exception_handler)\n",
                   what.c_str());
    }
  } catch (...) {
    std::fputs("ctxpool: a task threw, and reporting it failed (out of memory?)\n", stderr);
  }
}

/// The installed exception handler itself threw: say so, naming both
/// exceptions and the task, rather than passing it off as a task's own.
void print_handler_failure(const std::exception_ptr& handler_error,
                           const std::exception_ptr& task_error, const task_info& info) noexcept {
  try {
    const std::string thrown = exception_description(handler_error);
    const std::string original = exception_description(task_error);
    if (info.submit_site.line() != 0) {
      std::fprintf(stderr,
                   "ctxpool: the exception handler installed with "
                   "thread_pool::set_exception_handler threw %s while handling %s from the task "
                   "submitted at %s:%u (%s); the pool keeps running (an exception handler "
                   "should not throw)\n",
                   thrown.c_str(), original.c_str(), info.submit_site.file_name(),
                   static_cast<unsigned>(info.submit_site.line()),
                   info.submit_site.function_name());
    } else {
      std::fprintf(stderr,
                   "ctxpool: the exception handler installed with "
                   "thread_pool::set_exception_handler threw %s while handling %s from an Asio "
                   "handler run on the pool; the pool keeps running (an exception handler "
                   "should not throw)\n",
                   thrown.c_str(), original.c_str());
    }
  } catch (...) {
    std::fputs("ctxpool: the exception handler threw, and reporting it failed (out of memory?)\n",
               stderr);
  }
}

}  // namespace

void task_exception_reporter::set(exception_handler handler) {
  std::shared_ptr<const exception_handler> installed;
  if (handler) installed = std::make_shared<const exception_handler>(std::move(handler));
  std::lock_guard lock(mutex_);
  handler_.swap(installed);
}

void task_exception_reporter::report(std::exception_ptr error, const task_info& info) noexcept {
  std::shared_ptr<const exception_handler> handler;
  {
    std::lock_guard lock(mutex_);
    handler = handler_;
  }
  if (!handler) {
    print_task_exception(error, info);
    return;
  }
  try {
    (*handler)(error, info);
  } catch (...) {
    print_handler_failure(std::current_exception(), error, info);
  }
}

}  // namespace ctxpool::detail
