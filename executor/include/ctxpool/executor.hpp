// The umbrella header of ctxpool's executor layer: everything a program
// using the pool writes, in one include.
//
// - <ctxpool/thread_pool.hpp>: thread_pool, submit/post, wait/join/stop, and
//   the overview (context propagation, thread safety, lifetime);
// - <ctxpool/pool_executor.hpp>: its Asio executor;
// - <ctxpool/bind_context.hpp>: bind_context, for handlers on other executors;
// - <ctxpool/context_executor.hpp>: context_executor and in_context;
// - <ctxpool/asio/strand.hpp>, <ctxpool/asio/co_spawn.hpp>: Asio's strand
//   and co_spawn on the pool (included by the pool's own headers);
// - <ctxpool/context.hpp>, <ctxpool/thread_local.hpp>, <ctxpool/hooks.hpp>:
//   the context layer the pool runs tasks in.
//
// @par Thread safety
// See each header.
//
// @par Lifetime
// See <ctxpool/thread_pool.hpp>.
#pragma once

#include <ctxpool/asio/co_spawn.hpp>
#include <ctxpool/asio/strand.hpp>
#include <ctxpool/bind_context.hpp>
#include <ctxpool/context.hpp>
#include <ctxpool/context_executor.hpp>
#include <ctxpool/hooks.hpp>
#include <ctxpool/pool_executor.hpp>
#include <ctxpool/thread_local.hpp>
#include <ctxpool/thread_pool.hpp>
