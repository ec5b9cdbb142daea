// The installed greeter library (FetchContent'd ctxpool inside) works.
#include <greeter/greeter.hpp>

#include <cstdio>

int main() {
  ctxpool::set_scope scope{greeter::request_id, "req-9"};
  const std::string greeting = greeter::greet();
  std::printf("greeting: %s\n", greeting.c_str());
  return greeting == "hello from req-9" ? 0 : 1;
}
