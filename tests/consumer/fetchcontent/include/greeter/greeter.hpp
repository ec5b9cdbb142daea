// A user library built on ctxpool: greets on a pool, in the caller's context.
#pragma once

#include <string>

#include <ctxpool/context.hpp>

namespace greeter {

/// The request the caller is serving; greet() reads it inside the pool task.
extern ctxpool::context_var<std::string> request_id;

/// "hello from <request_id>", computed on a ctxpool::thread_pool.
std::string greet();

}  // namespace greeter
