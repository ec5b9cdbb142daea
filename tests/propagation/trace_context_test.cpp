// Tests of <ctxpool/trace_context.hpp>: traceparent and tracestate, rule by rule.
// Sections are those of W3C Trace Context Level 2 (https://www.w3.org/TR/trace-context-2/);
// "suite:" names the case of the W3C test suite (w3c/trace-context test/test.py)
// that checks the same rule over HTTP.
#include <ctxpool/trace_context.hpp>

#include <doctest/doctest.h>

#include "text_helpers.hpp"

#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using ctxpool::span_id;
using ctxpool::trace_flags;
using ctxpool::trace_id;
using ctxpool::traceparent;
using ctxpool::tracestate;

constexpr std::string_view valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

bool parses(std::string_view text) { return traceparent::parse(text).has_value(); }

using propagation_test::numbered;
using propagation_test::repeat;

}  // namespace

TEST_CASE("traceparent: the example of 'Traceparent Header' parses into its fields") {
  const auto parent = traceparent::parse(valid);
  REQUIRE(parent);
  CHECK(parent->trace.to_string() == "0af7651916cd43dd8448eb211c80319c");
  CHECK(parent->parent.to_string() == "b7ad6b7169203331");
  CHECK(parent->flags.sampled());
  CHECK_FALSE(parent->flags.random());
  CHECK(parent->to_string() == valid);
}

TEST_CASE(
    "traceparent: 'traceparent Header Field Values' - fields are lowercase hex of fixed length") {
  // HEXDIGLC: uppercase is not hex here (suite: the *_illegal_characters cases).
  CHECK_FALSE(parses("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"));
  CHECK_FALSE(parses("00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01"));
  CHECK_FALSE(parses("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0A"));
  CHECK_FALSE(parses("0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
  CHECK_FALSE(parses(".0-12345678901234567890123456789012-1234567890123456-01"));
  CHECK_FALSE(parses("00-.2345678901234567890123456789012-1234567890123456-01"));
  CHECK_FALSE(parses("00-12345678901234567890123456789012-123456789012345.-01"));
  CHECK_FALSE(parses("00-12345678901234567890123456789012-1234567890123456-.0"));
  // Lengths (suite: *_too_long, *_too_short).
  CHECK_FALSE(parses("000-12345678901234567890123456789012-1234567890123456-01"));
  CHECK_FALSE(parses("0-12345678901234567890123456789012-1234567890123456-01"));
  CHECK_FALSE(parses("00-123456789012345678901234567890123-1234567890123456-01"));
  CHECK_FALSE(parses("00-1234567890123456789012345678901-1234567890123456-01"));
  CHECK_FALSE(parses("00-12345678901234567890123456789012-12345678901234567-01"));
  CHECK_FALSE(parses("00-12345678901234567890123456789012-123456789012345-01"));
  CHECK_FALSE(parses("00-12345678901234567890123456789012-1234567890123456-001"));
  CHECK_FALSE(parses("00-12345678901234567890123456789012-1234567890123456-1"));
  // Delimiters are dashes.
  CHECK_FALSE(parses("00_12345678901234567890123456789012-1234567890123456-01"));
  CHECK_FALSE(parses("00-12345678901234567890123456789012_1234567890123456-01"));
  CHECK_FALSE(parses(""));
}

TEST_CASE("traceparent: 'version' - ff is forbidden") {
  CHECK_FALSE(
      parses("ff-12345678901234567890123456789012-1234567890123456-01"));  // suite: version_0xff
  CHECK_FALSE(parses("ff-12345678901234567890123456789012-1234567890123456-01-extra"));
}

TEST_CASE("traceparent: 'trace-id' and 'parent-id' - all zeros are invalid") {
  CHECK_FALSE(parses("00-00000000000000000000000000000000-1234567890123456-01"));
  CHECK_FALSE(parses("00-12345678901234567890123456789012-0000000000000000-01"));
  CHECK_FALSE(trace_id().is_valid());
  CHECK_FALSE(span_id().is_valid());
  // One non-zero bit is enough.
  CHECK(parses("00-00000000000000000000000000000001-0000000000000001-00"));
}

TEST_CASE("traceparent: version 00 carries nothing after the flags (suite: version_0x00)") {
  CHECK_FALSE(parses("00-12345678901234567890123456789012-1234567890123456-01."));
  CHECK_FALSE(parses(
      "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like"));
}

TEST_CASE(
    "traceparent: 'Versioning of traceparent' - a higher version is read by its first fields") {
  // suite: version_0xcc
  const auto plain = traceparent::parse("cc-12345678901234567890123456789012-1234567890123456-01");
  REQUIRE(plain);
  CHECK(plain->trace.to_string() == "12345678901234567890123456789012");
  const auto extended = traceparent::parse(
      "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like");
  REQUIRE(extended);
  CHECK(extended->parent.to_string() == "1234567890123456");
  // "Vendors MUST check that the 2 characters are either at the end of the string or followed by a dash."
  CHECK_FALSE(parses(
      "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like"));
  // "shorter than 55 characters ... should not parse the header".
  CHECK_FALSE(parses("cc-12345678901234567890123456789012-1234567890123456-1"));
  // "construct the new traceparent field according to the highest version ... known (00)".
  CHECK(extended->to_string() == "00-12345678901234567890123456789012-1234567890123456-01");
}

TEST_CASE(
    "traceparent: optional white space around the value is skipped (suite: traceparent_ows_handling)") {
  for (const char* text : {" 00-12345678901234567890123456789012-1234567890123456-01",
                           "\t00-12345678901234567890123456789012-1234567890123456-01",
                           "00-12345678901234567890123456789012-1234567890123456-01 ",
                           "00-12345678901234567890123456789012-1234567890123456-01\t",
                           "\t 00-12345678901234567890123456789012-1234567890123456-01 \t"}) {
    CAPTURE(text);
    CHECK(parses(text));
  }
  CHECK_FALSE(parses("00-12345678901234567890123456789012-1234567890123456-01\n"));
  CHECK_FALSE(parses("00 -12345678901234567890123456789012-1234567890123456-01"));
}

TEST_CASE("traceparent: 'trace-flags' - sampled and random kept, other flags sent as zero") {
  const auto random = traceparent::parse("00-12345678901234567890123456789012-1234567890123456-02");
  REQUIRE(random);  // suite: TraceContext2Test.test_propagates_random_flag
  CHECK(random->flags.random());
  CHECK_FALSE(random->flags.sampled());
  CHECK(random->to_string().ends_with("-02"));
  const auto both = traceparent::parse("00-12345678901234567890123456789012-1234567890123456-03");
  REQUIRE(both);
  CHECK((both->flags.sampled() && both->flags.random()));
  // "Other Flags": "Vendors MUST set those to zero".
  const auto all = traceparent::parse("00-12345678901234567890123456789012-1234567890123456-ff");
  REQUIRE(all);
  CHECK(all->flags.bits == trace_flags::known_bits);
  CHECK(all->to_string().ends_with("-03"));
  CHECK(all->flags.with_sampled(false).bits == trace_flags::random_bit);
}

TEST_CASE(
    "trace-id and parent-id: 'Considerations for trace-id field generation' - random and distinct") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const trace_id id = trace_id::random();
    CHECK(id.is_valid());
    seen.insert(id.to_string());
  }
  CHECK(seen.size() == 1000);
  // Threads do not share a sequence (each seeds its own generator).
  std::vector<std::string> a(64), b(64);
  std::thread ta([&] {
    for (auto& s : a) s = span_id::random().to_string();
  });
  std::thread tb([&] {
    for (auto& s : b) s = span_id::random().to_string();
  });
  ta.join();
  tb.join();
  std::set<std::string> all(a.begin(), a.end());
  all.insert(b.begin(), b.end());
  CHECK(all.size() == 128);
  CHECK(trace_id::from_hex(trace_id::random().to_string()).has_value());
}

TEST_CASE(
    "trace_context::start_new: new ids, random-trace-id flag set, not sampled, no tracestate") {
  const auto t = ctxpool::trace_context::start_new();
  CHECK(t.trace.is_valid());
  CHECK(t.parent.is_valid());
  CHECK(t.flags.random());         // "Random Trace ID Flag": ids are random, so SHOULD be set
  CHECK_FALSE(t.flags.sampled());  // "set to 0 as the default option when the trace is initiated"
  CHECK(t.state.empty());
  CHECK_FALSE(t.remote);
}

// --- tracestate -----------------------------------------------------------------

TEST_CASE("tracestate: 'tracestate Header Field Values' - list members in order") {
  const auto state = tracestate::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  REQUIRE(state.size() == 2);
  CHECK(state.get("rojo") == "00f067aa0ba902b7");
  CHECK(state.get("congo") == "t61rcWkgMzE");
  CHECK(state.members()[0].key == "rojo");
  CHECK(state.format() == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
}

TEST_CASE(
    "tracestate: several header fields are one list, in order (suite: multiple_headers_different_keys)") {
  const auto state = tracestate::parse({"foo=1,bar=2", "rojo=1,congo=2", "baz=3"});
  CHECK(state.format() == "foo=1,bar=2,rojo=1,congo=2,baz=3");
}

TEST_CASE(
    "tracestate: empty and white-space members are allowed (suite: empty_header, ows_handling)") {
  CHECK(tracestate::parse("").empty());
  CHECK(tracestate::parse({"foo=1", ""}).format() == "foo=1");
  CHECK(tracestate::parse({"", "foo=1"}).format() == "foo=1");
  CHECK(tracestate::parse("foo=1 \t , \t bar=2, \t baz=3").format() == "foo=1,bar=2,baz=3");
  CHECK(tracestate::parse("foo=1\t \t,\t \tbar=2,\t \tbaz=3").format() == "foo=1,bar=2,baz=3");
  CHECK(tracestate::parse(",, ,foo=1,\t,").format() == "foo=1");
  CHECK(tracestate::parse("\t foo=1 \t").get("foo") == "1");
}

TEST_CASE(
    "tracestate: 'Key' grammar - lowercase letters, digits, _ - * / @; first a letter or digit") {
  CHECK(tracestate::is_valid_key("abcdefghijklmnopqrstuvwxyz0123456789_-*/"));
  CHECK(tracestate::is_valid_key("0abc"));
  CHECK(tracestate::is_valid_key("foo@"));  // suite: key_illegal_vendor_format
  CHECK(tracestate::is_valid_key("foo@@bar"));
  CHECK(tracestate::is_valid_key("foo@bar@baz"));
  CHECK(tracestate::is_valid_key("t@" + repeat('v', 15)));  // suite: key_length_limit
  CHECK(tracestate::is_valid_key(repeat('z', 256)));
  CHECK_FALSE(tracestate::is_valid_key(repeat('z', 257)));
  CHECK_FALSE(tracestate::is_valid_key("@foo"));
  CHECK_FALSE(tracestate::is_valid_key("FOO"));
  CHECK_FALSE(tracestate::is_valid_key("foo.bar"));
  CHECK_FALSE(tracestate::is_valid_key("foo "));
  CHECK_FALSE(tracestate::is_valid_key("_foo"));
  CHECK_FALSE(tracestate::is_valid_key(""));
}

TEST_CASE(
    "tracestate: 'Value' grammar - printable ASCII but ',' and '=', no trailing space, 1 to 256") {
  std::string all;
  for (char c = 0x20; c <= 0x7e; ++c) {
    if (c != ',' && c != '=') all += c;
  }
  CHECK(tracestate::is_valid_value(all));  // suite: all_allowed_characters
  CHECK(tracestate::is_valid_value(" leading spaces are part of the value"));
  CHECK(tracestate::is_valid_value(repeat('v', 256)));
  CHECK_FALSE(tracestate::is_valid_value(repeat('v', 257)));
  CHECK_FALSE(tracestate::is_valid_value(""));
  CHECK_FALSE(tracestate::is_valid_value("trailing "));
  CHECK_FALSE(tracestate::is_valid_value("a=b"));
  CHECK_FALSE(tracestate::is_valid_value("a\tb"));
  CHECK_FALSE(tracestate::is_valid_value("caf\xc3\xa9"));
  // Leading spaces are kept, the trailing ones are white space around the member.
  const auto state = tracestate::parse("foo= 1 ");
  CHECK(state.get("foo") == " 1");
}

TEST_CASE(
    "tracestate: a member breaking the grammar invalidates the whole header (suite: strict level)") {
  CHECK(tracestate::parse("foo =1").empty());  // key_illegal_characters
  CHECK(tracestate::parse("FOO=1").empty());
  CHECK(tracestate::parse("foo.bar=1").empty());
  CHECK(tracestate::parse("@foo=1,bar=2").empty());  // key_illegal_vendor_format
  CHECK(tracestate::parse("foo=bar=baz").empty());   // value_illegal_characters
  CHECK(tracestate::parse("foo=,bar=3").empty());
  CHECK(tracestate::parse("foo").empty());
  CHECK(tracestate::parse({"foo=1", repeat('z', 257) + "=1"}).empty());  // key_length_limit
  const auto ok = tracestate::parse({"foo=1", repeat('t', 241) + "@" + repeat('v', 14) + "=1"});
  CHECK(ok.size() == 2);
}

TEST_CASE("tracestate: at most 32 members; 33 invalidate the header (suite: member_count_limit)") {
  std::vector<std::string> fields;
  std::string field;
  for (int i = 1; i <= 32; ++i) {
    if (!field.empty()) field += ',';
    field += numbered("bar", i) + "=" + std::to_string(i);
    if (i % 10 == 0) {
      fields.push_back(field);
      field.clear();
    }
  }
  fields.push_back(field);
  std::vector<std::string_view> views(fields.begin(), fields.end());
  const auto full = tracestate::parse(std::span<const std::string_view>(views));
  CHECK(full.size() == 32);
  CHECK(full.get("bar1") == "1");
  fields.back() += ",bar33=33";
  views.assign(fields.begin(), fields.end());
  CHECK(tracestate::parse(std::span<const std::string_view>(views)).empty());
}

TEST_CASE(
    "tracestate: duplicated keys - the left-most is kept, the rest refused (suite: duplicated_keys)") {
  // "Adding a key/value pair MUST NOT result in the same key being present
  // multiple times"; the suite accepts keeping one of them.
  CHECK(tracestate::parse("foo=1,foo=1").format() == "foo=1");
  CHECK(tracestate::parse("foo=1,foo=2").format() == "foo=1");
  CHECK(tracestate::parse({"foo=1", "foo=2"}).format() == "foo=1");
  CHECK(tracestate::parse("foo=1,bar=2,foo=3").format() == "foo=1,bar=2");
}

TEST_CASE(
    "tracestate: 'Mutating the tracestate Field' - a modified or new key moves to the front") {
  auto state = tracestate::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  const auto before = state;
  state.set("congo", "ucfJifl5GOE");
  CHECK(state.format() == "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7");
  state.set("new", "1");
  CHECK(state.format() == "new=1,congo=ucfJifl5GOE,rojo=00f067aa0ba902b7");
  CHECK(state.erase("rojo"));
  CHECK_FALSE(state.erase("rojo"));
  CHECK(state.format() == "new=1,congo=ucfJifl5GOE");
  // Copies are values: the copy taken before is unchanged.
  CHECK(before.format() == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  CHECK_THROWS_AS(state.set("Bad", "1"), ctxpool::invalid_header_value);
  CHECK_THROWS_AS(state.set("ok", "a,b"), ctxpool::invalid_header_value);
  CHECK(state.size() == 2);
}

TEST_CASE(
    "tracestate: adding a 33rd member removes the right-most ('tracestate Header Field Values')") {
  tracestate state;
  for (int i = 0; i < 32; ++i) state.set(numbered("k", i), "v");
  CHECK(state.size() == 32);
  state.set("new", "v");
  CHECK(state.size() == 32);
  CHECK(state.members().front().key == "new");
  CHECK_FALSE(state.get("k0"));  // the oldest, right-most
  CHECK(state.get("k1"));
}

TEST_CASE(
    "tracestate: 'tracestate Limits' - truncation by whole members, long ones first, 512 kept") {
  // 40-character members: 12 of them make 491 characters, 13 make 532.
  tracestate state;
  for (int i = 12; i >= 0; --i) {
    const std::string key = numbered("k", i, 2);
    state.set(key, repeat('v', 36));
  }
  const std::string all = state.format(10000);
  CHECK(all.size() == 13 * 40 + 12);
  const std::string cut = state.format();
  CHECK(cut.size() == 12 * 40 + 11);
  CHECK(cut == all.substr(0, cut.size()));  // dropped from the end, whole
  // A member over 128 characters goes first, wherever it is.
  auto with_long = tracestate::parse("a=1,long=" + repeat('x', 200) + ",b=2");
  CHECK(with_long.format(100) == "a=1,b=2");
  // Everything within 512 characters is kept.
  auto big = tracestate::parse("long=" + repeat('x', 250) + ",b=" + repeat('y', 250));
  CHECK(big.format().size() == 5 + 250 + 1 + 2 + 250);
  CHECK(tracestate().format().empty());
}
