#include <greeter/greeter.hpp>

#include <ctxpool/executor.hpp>

namespace greeter {

ctxpool::context_var<std::string> request_id{"request_id"};

std::string greet() {
  ctxpool::thread_pool pool{1};
  return pool.submit([] { return "hello from " + request_id.get(); }).get();
}

}  // namespace greeter
