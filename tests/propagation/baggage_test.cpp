// Tests of <ctxpool/baggage.hpp>, rule by rule. Sections are those of W3C
// Baggage (https://www.w3.org/TR/baggage/), "HTTP Header Format".
#include <ctxpool/baggage.hpp>

#include <doctest/doctest.h>

#include "text_helpers.hpp"

#include <string>
#include <vector>

namespace {

using ctxpool::baggage;
using ctxpool::baggage_property;

using propagation_test::numbered;
using propagation_test::repeat;

}  // namespace

TEST_CASE("baggage: 'Examples of HTTP headers' - single header, decoded values") {
  const auto bag = baggage::parse("userId=alice,serverNode=DF%2028,isProduction=false");
  REQUIRE(bag.size() == 3);
  CHECK(bag.get("userId") == "alice");
  CHECK(bag.get("serverNode") == "DF 28");
  CHECK(bag.get("isProduction") == "false");
  CHECK(bag.format() == "userId=alice,serverNode=DF%2028,isProduction=false");
  CHECK(baggage::parse("userId=Am%C3%A9lie").get("userId") == "Am\xc3\xa9lie");
}

TEST_CASE(
    "baggage: multiple headers combine, in order; OWS around keys and values is not part of them") {
  const auto bag =
      baggage::parse({"userId =   alice", "serverNode = DF%2028, isProduction = false"});
  REQUIRE(bag.size() == 3);
  CHECK(bag.entries()[0].key == "userId");
  CHECK(bag.get("userId") == "alice");
  CHECK(bag.entries()[2].key == "isProduction");
  CHECK(bag.get("isProduction") == "false");
}

TEST_CASE("baggage: 'property' - bare keys and key=value properties, with OWS") {
  const auto bag = baggage::parse(
      "key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue");
  REQUIRE(bag.size() == 3);
  const auto* key1 = bag.find("key1");
  REQUIRE(key1);
  CHECK(key1->properties ==
        std::vector<baggage_property>{{"property1", std::nullopt}, {"property2", std::nullopt}});
  const auto* key3 = bag.find("key3");
  REQUIRE(key3);
  CHECK(key3->properties == std::vector<baggage_property>{{"propertyKey", "propertyValue"}});
  CHECK(bag.format() ==
        "key1=value1;property1;property2,key2=value2,key3=value3;propertyKey=propertyValue");
  // Property values are percent-decoded like values.
  CHECK(baggage::parse("k=v;p=a%20b").find("k")->properties[0].value == "a b");
}

TEST_CASE("baggage: 'value' - may contain '=', may be empty") {
  CHECK(baggage::parse("k=a=b==").get("k") == "a=b==");
  CHECK(baggage::parse("k=").get("k") == "");
  CHECK(baggage::parse("k=").size() == 1);
}

TEST_CASE("baggage: 'value' - percent-encoded on output: outside baggage-octet, and '%'") {
  baggage bag;
  bag.set("k", "a b,c;d\\e\"f%g\xc3\xa9=h/");
  CHECK(bag.format() == "k=a%20b%2Cc%3Bd%5Ce%22f%25g%C3%A9=h/");
  CHECK(baggage::parse(bag.format()) == bag);
  // Lowercase escapes decode too ("MAY be percent-encoded").
  CHECK(baggage::parse("k=%c3%a9%41").get("k") ==
        "\xc3\xa9"
        "A");
}

TEST_CASE("baggage: 'value' - octets that are not UTF-8 decode to U+FFFD") {
  CHECK(baggage::parse("k=%FF").get("k") == "\xEF\xBF\xBD");
  CHECK(baggage::parse("k=a%C3").get("k") == "a\xEF\xBF\xBD");    // truncated sequence
  CHECK(baggage::parse("k=%C3%28").get("k") == "\xEF\xBF\xBD(");  // bad continuation
  CHECK(baggage::parse("k=%ED%A0%80").get("k") ==
        "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");                           // surrogate
  CHECK(baggage::parse("k=%F0%9F%98%80").get("k") == "\xF0\x9F\x98\x80");  // U+1F600 is fine
  CHECK(baggage::parse("k=%E2%82").get("k") == "\xEF\xBF\xBD");  // maximal subpart: one U+FFFD
  CHECK(baggage::parse("k=v;p=%FF").find("k")->properties[0].value == "\xEF\xBF\xBD");
  // set() keeps the same invariant, so what is sent reads back equal.
  baggage bag;
  bag.set("k", "\xff");
  CHECK(bag.get("k") == "\xEF\xBF\xBD");
}

TEST_CASE("baggage: an invalid member is dropped on its own ('Mutating baggage')") {
  const auto bag = baggage::parse(
      "good=1,no-equals,=novalue,bad key=1,k=\"quoted\",k2=a\\b,pct=%zz,trail=%4,ok=2;,ok3=3;p=%G0,last=9");
  CHECK(bag.format() == "good=1,last=9");
  CHECK(baggage::parse(",, ,a=1, ,").format() == "a=1");
  CHECK(baggage::parse("").empty());
}

TEST_CASE("baggage: 'key' is a token and is not decoded") {
  CHECK(baggage::is_valid_key("!#$%&'*+-.^_`|~09AZaz"));
  CHECK_FALSE(baggage::is_valid_key("a b"));
  CHECK_FALSE(baggage::is_valid_key("a=b"));
  CHECK_FALSE(baggage::is_valid_key("a/b"));
  CHECK_FALSE(baggage::is_valid_key(""));
  CHECK(baggage::parse("a%41=1").get("a%41") == "1");
  baggage bag;
  CHECK_THROWS_AS(bag.set("a b", "1"), ctxpool::invalid_header_value);
  CHECK_THROWS_AS(bag.set("k", "1", {{"bad key", std::nullopt}}), ctxpool::invalid_header_value);
  CHECK(bag.empty());
}

TEST_CASE("baggage: 'baggage-string' - duplicates are kept in order; set replaces them") {
  auto bag = baggage::parse("k=1,other=x,k=2");
  CHECK(bag.size() == 3);
  CHECK(bag.get("k") == "1");
  CHECK(bag.format() == "k=1,other=x,k=2");
  const auto before = bag;
  bag.set("k", "3");
  CHECK(bag.format() == "k=3,other=x");
  bag.set("new", "n", {{"ttl", "60"}, {"flag", std::nullopt}});
  CHECK(bag.format() == "k=3,other=x,new=n;ttl=60;flag");
  CHECK(bag.erase("k") == 1);
  CHECK(bag.format() == "other=x,new=n;ttl=60;flag");
  CHECK(before.format() == "k=1,other=x,k=2");  // copies are values
}

TEST_CASE("baggage: 'Limits' - 64 members and 8,192 bytes propagated, never a partial member") {
  // 64 members of 126 bytes and 63 commas: 8,127 bytes, all sent.
  baggage bag;
  for (int i = 0; i < 64; ++i) {
    const std::string key = numbered("key", i, 2);
    bag.set(key, repeat('v', 126 - key.size() - 1));
  }
  const std::string header = bag.format();
  CHECK(header.size() == 64 * 126 + 63);
  CHECK(header.size() <= baggage::max_bytes);
  CHECK(baggage::parse(header) == bag);
  // One more member that does not fit is left out whole; a later small one still goes.
  bag.set("big", repeat('x', 200));
  bag.set("small", "1");
  const std::string cut = bag.format();
  CHECK(cut.size() <= baggage::max_bytes);
  const auto back = baggage::parse(cut);
  CHECK(back.size() == 65);
  CHECK_FALSE(back.get("big"));
  CHECK(back.get("small") == "1");
  // Up to 180 members are sent.
  baggage many;
  for (int i = 0; i < 200; ++i) many.set(numbered("k", i), "1");
  CHECK(baggage::parse(many.format()).size() == baggage::max_members);
  // An encoded value counts at its encoded size.
  baggage wide;
  wide.set("k", repeat(' ', 3000));  // 9000 bytes encoded
  CHECK(wide.format().empty());
}
