#!/usr/bin/env python3
"""trace_conformance.py: http_server's POST /trace-test against the W3C
trace-context test protocol, and a trace through two chained servers.

    trace_conformance.py <path to http_server> conformance|chain

This plays the role of the W3C test harness (github.com/w3c/trace-context,
test/): it runs a callback server on 127.0.0.1, asks the service under test
to call it back -- a POST to /trace-test whose body is a JSON array of
{"url", "arguments"} -- with the trace-context headers of each case, and
checks what the callbacks carry against the specification's rules. The cases
are the suite's, at strict level 2 and specification level 2 (the
random-trace-id flag); each is cited by the suite's test name. The suite
itself is not used or copied: this is our own driver for its protocol, in
the standard library only.

  conformance  every case, against one server
  chain        a request through two chained servers keeps one trace id and
               gets a new parent id at each hop; each server's log line
               carries the trace id and the parent it was called by, next to
               the request id; baggage travels along

Exits 0 when every check holds, 1 otherwise. Every wait is bounded (each
HTTP exchange 10 s, the whole run 120 s); nothing is timed.
"""

import http.client
import http.server
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time

RUN_LIMIT = 120.0
started_at = time.monotonic()
failures = 0


def check(ok, what):
    global failures
    print(("  ok:   " if ok else "  FAIL: ") + what, flush=True)
    if not ok:
        failures += 1
    return ok


def out_of_time():
    return time.monotonic() - started_at > RUN_LIMIT


# ---- the harness's callback server ---------------------------------------------------------

class Callbacks:
    """Every callback received, by path: its header fields (in order, repeats kept) and body."""

    def __init__(self):
        self.lock = threading.Lock()
        self.received = {}

    def record(self, path, headers, body):
        with self.lock:
            self.received[path] = {"headers": headers, "body": body}

    def get(self, path):
        with self.lock:
            return self.received.get(path)


def start_harness(callbacks):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = "<not JSON: %r>" % raw[:80]
            callbacks.record(self.path, list(self.headers.items()), body)
            answer = b"null"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


# ---- the servers under test ------------------------------------------------------------------

class Service:
    """An http_server process on a port it chose; its stdout (the log) is collected."""

    def __init__(self, program):
        self.proc = subprocess.Popen([program, "--port", "0", "--threads", "2"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = b""
        until = time.monotonic() + 30
        while not line.endswith(b"\n") and time.monotonic() < until:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                byte = os.read(self.proc.stdout.fileno(), 1)  # nothing past the line is buffered
                if not byte:
                    break
                line += byte
        match = re.search(rb"127\.0\.0\.1:(\d+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError("the server did not say where it listens: %r" % line)
        self.port = int(match.group(1))
        self.lines = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.stderr = b""

    def _read(self):
        for raw in self.proc.stdout:
            with self.lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def log(self):
        with self.lock:
            return list(self.lines)

    def stop(self):
        self.proc.terminate()
        try:
            _, self.stderr = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()
            check(False, "the server exited within 30 s of SIGTERM")
        return self.proc.returncode


def post(port, path, body, headers=()):
    """POSTs `body` (JSON) with `headers` (pairs; repeats are sent as repeated
    fields, in order). Returns (status, response header pairs, body text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        payload = json.dumps(body).encode()
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(payload)))
        conn.endheaders(payload)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read().decode("utf-8", "replace")
    finally:
        conn.close()


# ---- reading what the callbacks carry -----------------------------------------------------

TRACEPARENT_RE = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def fields(headers, name):
    return [value for key, value in headers if key.lower() == name]


def traceparent_of(headers, what):
    """(trace id, parent id, flags) of the one traceparent field, or None after a failed check."""
    values = fields(headers, "traceparent")
    if not check(len(values) == 1, "%s: the callback carries exactly one traceparent (got %r)"
                 % (what, values)):
        return None
    match = TRACEPARENT_RE.match(values[0])
    if not check(match is not None and match.group(1) == "00"
                 and match.group(2) != "0" * 32 and match.group(3) != "0" * 16,
                 "%s: it is a valid version-00 traceparent (%r)" % (what, values[0])):
        return None
    return match.group(2), match.group(3), int(match.group(4), 16)


def tracestate_of(headers):
    """The combined tracestate as an ordered list of (key, value)."""
    members = []
    for value in fields(headers, "tracestate"):
        for member in re.split(r"[ \t]*,[ \t]*", value.strip(" \t")):
            if member:
                key, _, val = member.partition("=")
                members.append((key, val))
    return members


class Scope:
    """One exchange with the service: the harness asks it for `count` callbacks."""
    next_id = 0

    def __init__(self, harness_port, service_port, callbacks):
        Scope.next_id += 1
        self.id = "s%d" % Scope.next_id
        self.harness_port = harness_port
        self.service_port = service_port
        self.callbacks = callbacks

    def url(self, n):
        return "http://127.0.0.1:%d/%s.%d" % (self.harness_port, self.id, n)

    def run(self, headers, count=1, what=""):
        calls = [{"url": self.url(n), "arguments": []} for n in range(count)]
        status, _, body = post(self.service_port, "/trace-test", calls, headers)
        check(status == 200, "%s: /trace-test answered 200 (got %d: %s)" % (what, status, body[:100]))
        # The service answers only after every callback finished: they are all here already.
        got = [self.callbacks.get("/%s.%d" % (self.id, n)) for n in range(count)]
        check(all(g is not None for g in got),
              "%s: all %d callbacks arrived before the service answered" % (what, count))
        return [g["headers"] for g in got if g is not None]


# ---- the cases ------------------------------------------------------------------------------------

TRACE = "12345678901234567890123456789012"
PARENT = "1234567890123456"
VALID = "00-%s-%s-01" % (TRACE, PARENT)
VALID00 = "00-%s-%s-00" % (TRACE, PARENT)


def run_conformance(program):
    callbacks = Callbacks()
    harness = start_harness(callbacks)
    service = Service(program)
    harness_port = harness.server_address[1]

    def single(headers, what):
        got = Scope(harness_port, service.port, callbacks).run(headers, 1, what)
        if not got:
            return None, []
        return traceparent_of(got[0], what), tracestate_of(got[0])

    def kept(headers, what):
        parent, state = single(headers, what)
        if parent:
            check(parent[0] == TRACE and parent[1] != PARENT,
                  "%s: same trace id, new parent id (%s-%s)" % (what, parent[0], parent[1]))
        return parent, state

    def restarted(headers, what, also_not=()):
        parent, _ = single(headers, what)
        if parent:
            check(parent[0] not in (TRACE,) + tuple(also_not) and parent[0] != "0" * 32,
                  "%s: a new trace id (%s)" % (what, parent[0]))

    # TraceContextTest: traceparent
    single([], "test_both_traceparent_and_tracestate_missing")
    kept([["traceparent", VALID]], "test_traceparent_included_tracestate_missing")
    restarted([["traceparent", "00-12345678901234567890123456789011-1234567890123456-01"],
               ["traceparent", VALID]], "test_traceparent_duplicated",
              ("12345678901234567890123456789011",))
    for name in ("trace-parent", "trace.parent"):
        restarted([[name, VALID]], "test_traceparent_header_name (%s)" % name)
    for name in ("TraceParent", "TrAcEpArEnT", "TRACEPARENT"):
        kept([[name, VALID]], "test_traceparent_header_name_valid_casing (%s)" % name)
    restarted([["traceparent", VALID + "."]], "test_traceparent_version_0x00 (trailing '.')")
    restarted([["traceparent", VALID + "-what-the-future-will-be-like"]],
              "test_traceparent_version_0x00 (trailing fields)")
    future = "cc-%s-%s-01" % (TRACE, PARENT)
    kept([["traceparent", future]], "test_traceparent_version_0xcc")
    kept([["traceparent", future + "-what-the-future-will-be-like"]],
         "test_traceparent_version_0xcc (with future fields)")
    restarted([["traceparent", future + ".what-the-future-will-be-like"]],
              "test_traceparent_version_0xcc (no '-' after the flags)")
    restarted([["traceparent", "ff-%s-%s-01" % (TRACE, PARENT)]], "test_traceparent_version_0xff")
    invalid_parents = {
        "test_traceparent_version_illegal_characters": [".0-%s-%s-01" % (TRACE, PARENT),
                                                         "0.-%s-%s-01" % (TRACE, PARENT)],
        "test_traceparent_version_too_long": ["000-%s-%s-01" % (TRACE, PARENT),
                                               "0000-%s-%s-01" % (TRACE, PARENT)],
        "test_traceparent_version_too_short": ["0-%s-%s-01" % (TRACE, PARENT)],
        "test_traceparent_trace_id_all_zero": ["00-%s-%s-01" % ("0" * 32, PARENT)],
        "test_traceparent_trace_id_illegal_characters": [
            "00-.2345678901234567890123456789012-%s-01" % PARENT,
            "00-1234567890123456789012345678901.-%s-01" % PARENT],
        "test_traceparent_trace_id_too_long": ["00-%s3-%s-01" % (TRACE, PARENT)],
        "test_traceparent_trace_id_too_short": ["00-%s-%s-01" % (TRACE[:-1], PARENT)],
        "test_traceparent_parent_id_all_zero": ["00-%s-%s-01" % (TRACE, "0" * 16)],
        "test_traceparent_parent_id_illegal_characters": ["00-%s-.234567890123456-01" % TRACE,
                                                           "00-%s-123456789012345.-01" % TRACE],
        "test_traceparent_parent_id_too_long": ["00-%s-%s7-01" % (TRACE, PARENT)],
        "test_traceparent_parent_id_too_short": ["00-%s-%s-01" % (TRACE, PARENT[:-1])],
        "test_traceparent_trace_flags_illegal_characters": ["00-%s-%s-.0" % (TRACE, PARENT),
                                                             "00-%s-%s-0." % (TRACE, PARENT)],
        "test_traceparent_trace_flags_too_long": ["00-%s-%s-001" % (TRACE, PARENT)],
        "test_traceparent_trace_flags_too_short": ["00-%s-%s-1" % (TRACE, PARENT)],
    }
    for name, values in invalid_parents.items():
        for value in values:
            restarted([["traceparent", value]], "%s (%s)" % (name, value),
                      ("23456789012345678901234567890123",))
    for value in (" " + VALID, "\t" + VALID, VALID + " ", VALID + "\t", "\t " + VALID + " \t"):
        kept([["traceparent", value]], "test_traceparent_ows_handling (%r)" % value[:3])

    # TraceContextTest: tracestate
    _, one = single([["tracestate", "foo=1"]], "test_tracestate_included_traceparent_missing")
    _, two = single([["tracestate", "foo=1,bar=2"]], "test_tracestate_included_traceparent_missing")
    check(len(one) == len(two) == 0, "test_tracestate_included_traceparent_missing: tracestate "
          "dropped without a traceparent (%r, %r)" % (one, two))
    _, state = kept([["traceparent", VALID00], ["tracestate", "foo=1,bar=2"]],
                    "test_tracestate_included_traceparent_included")
    check(dict(state).get("foo") == "1" and dict(state).get("bar") == "2",
          "test_tracestate_included_traceparent_included: inherited (%r)" % state)
    for name in ("trace-state", "trace.state"):
        _, state = single([["traceparent", VALID00], [name, "foo=1"]], "test_tracestate_header_name")
        check("foo" not in dict(state), "test_tracestate_header_name (%s): discarded" % name)
    for name in ("TraceState", "TrAcEsTaTe", "TRACESTATE"):
        _, state = single([["traceparent", VALID00], [name, "foo=1"]],
                          "test_tracestate_header_name_valid_casing")
        check(dict(state).get("foo") == "1",
              "test_tracestate_header_name_valid_casing (%s): inherited" % name)
    for headers in ([["tracestate", ""]], [["tracestate", "foo=1"], ["tracestate", ""]],
                    [["tracestate", ""], ["tracestate", "foo=1"]]):
        _, state = kept([["traceparent", VALID00]] + headers, "test_tracestate_empty_header")
        want_foo = any(v == "foo=1" for _, v in headers)
        check((dict(state).get("foo") == "1") == want_foo and all(k for k, _ in state),
              "test_tracestate_empty_header (%r): %r" % ([v for _, v in headers], state))
    _, state = kept([["traceparent", VALID00], ["tracestate", "foo=1,bar=2"],
                     ["tracestate", "rojo=1,congo=2"], ["tracestate", "baz=3"]],
                    "test_tracestate_multiple_headers_different_keys")
    check(state == [("foo", "1"), ("bar", "2"), ("rojo", "1"), ("congo", "2"), ("baz", "3")],
          "test_tracestate_multiple_headers_different_keys: combined in order (%r)" % state)
    for headers, allowed in (([["tracestate", "foo=1,foo=1"]], ("1",)),
                             ([["tracestate", "foo=1,foo=2"]], ("1", "2")),
                             ([["tracestate", "foo=1"], ["tracestate", "foo=1"]], ("1",)),
                             ([["tracestate", "foo=1"], ["tracestate", "foo=2"]], ("1", "2"))):
        _, state = kept([["traceparent", VALID00]] + headers, "test_tracestate_duplicated_keys")
        check(any(k == "foo" and v in allowed for k, v in state),
              "test_tracestate_duplicated_keys (%r): %r" % ([v for _, v in headers], state))
    key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
    value = "".join(map(chr, range(0x20, 0x2C))) + "".join(map(chr, range(0x2D, 0x3D))) + \
        "".join(map(chr, range(0x3E, 0x7F)))
    for k in (key, key + "@a-z0-9_-*/"):
        _, state = single([["traceparent", VALID00], ["tracestate", k + "=" + value]],
                          "test_tracestate_all_allowed_characters")
        check(dict(state).get(k) == value,
              "test_tracestate_all_allowed_characters (%s...): inherited" % k[:12])
    for text in ("foo=1 \t , \t bar=2, \t baz=3", "foo=1\t \t,\t \tbar=2,\t \tbaz=3"):
        _, state = single([["traceparent", VALID00], ["tracestate", text]],
                          "test_tracestate_ows_handling")
        check(dict(state) == {"foo": "1", "bar": "2", "baz": "3"},
              "test_tracestate_ows_handling (%r): %r" % (text, state))
    for text in (" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"):
        _, state = kept([["traceparent", VALID00], ["tracestate", text]],
                        "test_tracestate_ows_handling")
        check(dict(state) == {"foo": "1"}, "test_tracestate_ows_handling (%r): %r" % (text, state))
    for text, gone in (("foo =1", "foo "), ("FOO=1", "FOO"), ("foo.bar=1", "foo.bar")):
        _, state = single([["traceparent", VALID00], ["tracestate", text]],
                          "test_tracestate_key_illegal_characters")
        check(gone not in dict(state), "test_tracestate_key_illegal_characters (%r): discarded "
              "(%r)" % (text, state))
    for text, want in (("foo@=1,bar=2", {"foo@": "1", "bar": "2"}), ("@foo=1,bar=2", {}),
                       ("foo@@bar=1,bar=2", {"foo@@bar": "1", "bar": "2"}),
                       ("foo@bar@baz=1,bar=2", {"foo@bar@baz": "1", "bar": "2"})):
        _, state = single([["traceparent", VALID00], ["tracestate", text]],
                          "test_tracestate_key_illegal_vendor_format")
        check(dict(state) == want,
              "test_tracestate_key_illegal_vendor_format (%r): %r" % (text, state))
    lists = ["bar01=01,bar02=02,bar03=03,bar04=04,bar05=05,bar06=06,bar07=07,bar08=08,bar09=09,"
             "bar10=10", "bar11=11,bar12=12,bar13=13,bar14=14,bar15=15,bar16=16,bar17=17,"
             "bar18=18,bar19=19,bar20=20", "bar21=21,bar22=22,bar23=23,bar24=24,bar25=25,"
             "bar26=26,bar27=27,bar28=28,bar29=29,bar30=30"]
    _, state = single([["traceparent", VALID00]] + [["tracestate", v] for v in lists] +
                      [["tracestate", "bar31=31,bar32=32"]], "test_tracestate_member_count_limit")
    check(len(state) == 32 and dict(state).get("bar01") == "01",
          "test_tracestate_member_count_limit: 32 members inherited (%d)" % len(state))
    _, state = single([["traceparent", VALID00]] + [["tracestate", v] for v in lists] +
                      [["tracestate", "bar31=31,bar32=32,bar33=33"]],
                      "test_tracestate_member_count_limit")
    check("bar01" not in dict(state), "test_tracestate_member_count_limit: 33 members discarded")
    for k, ok in (("z" * 256, True), ("z" * 257, False), ("t" * 241 + "@" + "v" * 14, True),
                  ("t" * 242 + "@v", True), ("t@" + "v" * 15, True)):
        _, state = single([["traceparent", VALID00], ["tracestate", "foo=1"],
                           ["tracestate", k + "=1"]], "test_tracestate_key_length_limit")
        got = dict(state)
        check((got.get("foo") == "1" and got.get(k) == "1") if ok else "foo" not in got,
              "test_tracestate_key_length_limit (%d characters): %s" %
              (len(k), "inherited" if ok else "discarded"))
    for text in ("foo=bar=baz", "foo=,bar=3"):
        _, state = single([["traceparent", VALID00], ["tracestate", text]],
                          "test_tracestate_value_illegal_characters")
        check("foo" not in dict(state) and "bar" not in dict(state),
              "test_tracestate_value_illegal_characters (%r): discarded (%r)" % (text, state))

    # AdvancedTest: several callbacks from one request
    for headers, name in (([["traceparent", VALID]], "test_multiple_requests_with_valid_traceparent"),
                          ([], "test_multiple_requests_without_traceparent"),
                          ([["traceparent", "00-%s-%s-01" % ("0" * 32, PARENT)]],
                           "test_multiple_requests_with_illegal_traceparent")):
        got = Scope(harness_port, service.port, callbacks).run(headers, 3, name)
        parents = [traceparent_of(h, name) for h in got]
        parents = [p for p in parents if p]
        traces = {p[0] for p in parents}
        check(len(parents) == 3 and len({p[1] for p in parents}) == 3 and len(traces) == 1 and
              (TRACE in traces if headers and name.endswith("valid_traceparent") else
               "0" * 32 not in traces),
              "%s: one trace id (%s), three different parent ids" % (name, ",".join(traces)))

    # TraceContext2Test: the random-trace-id flag (Level 2)
    parent, _ = kept([["traceparent", "00-%s-%s-02" % (TRACE, PARENT)]],
                     "test_propagates_random_flag")
    if parent:
        check(parent[2] & 0x02 != 0, "test_propagates_random_flag: random flag kept (%02x)" % parent[2])
    parent, _ = single([], "a new trace (Level 2, Random Trace ID Flag)")
    if parent:
        check(parent[2] & 0x02 != 0, "a trace the service starts has the random flag set (%02x)"
              % parent[2])

    # The service's own answer, and what it refuses.
    status, headers, body = post(service.port, "/trace-test",
                                 [{"url": "http://127.0.0.1:%d/x.0" % harness_port}])
    check(status == 200 and json.loads(body) == [{"url": "http://127.0.0.1:%d/x.0" % harness_port,
                                                  "status": 200}],
          "the answer lists each call with its status (%s)" % body)
    # A call that fails (nobody listens there) is reported, and does not hold up the others.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_url = "http://127.0.0.1:%d/nobody" % closed.getsockname()[1]
    closed.close()
    status, _, body = post(service.port, "/trace-test",
                           [{"url": dead_url}, {"url": "http://127.0.0.1:%d/x.1" % harness_port}])
    answer = json.loads(body) if status == 200 else []
    check(len(answer) == 2 and answer[0]["status"] == 0 and "connect" in answer[0].get("error", "")
          and answer[1]["status"] == 200 and callbacks.get("/x.1") is not None,
          "a call that cannot connect is reported as such, the other one is made (%s)" % body)
    status, _, _ = post(service.port, "/trace-test", {"url": "not an array"})
    check(status == 400, "a body that is not a JSON array gets 400")
    code = service.stop()
    check(code == 0, "the server exits with status 0 on SIGTERM (%d)" % code)
    harness.shutdown()


def run_chain(program):
    callbacks = Callbacks()
    harness = start_harness(callbacks)
    first = Service(program)
    second = Service(program)
    harness_port = harness.server_address[1]
    # The harness asks the first server to call the second, which calls back.
    calls = [{"url": "http://127.0.0.1:%d/trace-test" % second.port,
              "arguments": [{"url": "http://127.0.0.1:%d/chain.0" % harness_port,
                             "arguments": ["from the second"]}]}]
    status, _, body = post(first.port, "/trace-test", calls,
                           [["traceparent", VALID], ["baggage", "user=alice,tier=gold"],
                            ["X-Request-Id", "chain-1"]])
    check(status == 200, "the first server answers 200 once the chain is done (%s)" % body[:200])
    got = callbacks.get("/chain.0")
    parent = None
    if check(got is not None, "the second server called the harness back"):
        parent = traceparent_of(got["headers"], "chain")
        if parent:
            check(parent[0] == TRACE, "the trace id survived both hops (%s)" % parent[0])
        check(got["body"] == ["from the second"], "with the arguments it was given as its body")
        check(fields(got["headers"], "baggage") == ["user=alice,tier=gold"],
              "and the baggage, unchanged (%r)" % fields(got["headers"], "baggage"))
    # Each server logs the trace id and the operation that called it.
    line_re = re.compile(r"\[conn \d+ req (\S+) trace ([0-9a-f]{32}) parent ([0-9a-f]{16})\] "
                         r"POST /trace-test")
    until = time.monotonic() + 10
    seen = {}
    while time.monotonic() < until and len(seen) < 2:
        for name, server in (("first", first), ("second", second)):
            for line in server.log():
                match = line_re.search(line)
                if match:
                    seen[name] = match.groups()
        time.sleep(0.05)
    if check(len(seen) == 2, "both servers logged the request with its trace (%r)" % seen):
        (req1, trace1, parent1), (req2, trace2, parent2) = seen["first"], seen["second"]
        check(req1 == "chain-1", "the first server's line carries the request id chain-1")
        check(trace1 == trace2 == TRACE, "both lines carry the one trace id")
        received = [parent1, parent2]
        if got is not None and parent:
            received.append(parent[1])
        check(parent1 == PARENT and len(set(received)) == len(received),
              "a new parent id at each hop: harness %s -> first %s -> second %s"
              % tuple(received + ["?"] * (3 - len(received))))
    for name, server in (("first", first), ("second", second)):
        check(server.stop() == 0, "the %s server exits with status 0 on SIGTERM" % name)
    harness.shutdown()


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("conformance", "chain"):
        print(__doc__)
        return 2
    print("trace_conformance %s" % sys.argv[2], flush=True)
    watchdog = threading.Timer(RUN_LIMIT, lambda: (print("  FAIL: out of time", flush=True),
                                                   sys.stdout.flush(), os._exit(1)))
    watchdog.daemon = True
    watchdog.start()
    try:
        (run_conformance if sys.argv[2] == "conformance" else run_chain)(sys.argv[1])
    except Exception as error:  # a failed exchange is a failed check, with its reason
        check(False, "unexpected error: %r" % error)
    print("OK" if failures == 0 else "FAIL (%d)" % failures)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
