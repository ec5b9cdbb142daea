// Tests of <ctxpool/errors.hpp>: the exception types and what generic handlers see.
#include <ctxpool/errors.hpp>

#include <doctest/doctest.h>

#include <stdexcept>

TEST_CASE("each ctxpool error is caught by the handler for its standard base") {
  CHECK_THROWS_AS(throw ctxpool::lookup_error("x"), std::out_of_range);
  CHECK_THROWS_AS(throw ctxpool::token_error(ctxpool::token_error::reason::already_used, "x"),
                  std::invalid_argument);
  CHECK_THROWS_AS(throw ctxpool::context_error("x"), std::logic_error);
}

TEST_CASE("token_error carries which misuse happened and its message") {
  const ctxpool::token_error error(ctxpool::token_error::reason::other_context, "made elsewhere");
  CHECK(error.why() == ctxpool::token_error::reason::other_context);
  CHECK(std::string(error.what()) == "made elsewhere");
}
