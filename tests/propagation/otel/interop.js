// ctxpool <-> OpenTelemetry JS interop: W3CTraceContextPropagator and
// W3CBaggagePropagator (@opentelemetry/core, pinned in package-lock.json).
//
//   node interop.js <otel_interop_driver>
//
// For every case of the table: the same header fields are extracted by
// OpenTelemetry and by ctxpool (the driver), and must give the same trace,
// tracestate and baggage; then what ctxpool injects is read back by
// OpenTelemetry and must come out unchanged. Where OpenTelemetry departs from
// the W3C specifications, the case says so (`departs`), ctxpool must give what
// the specification asks (`spec`), and OpenTelemetry must still differ, so a
// fixed OpenTelemetry shows up here as a failure asking to update the table.
'use strict';

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const api = require('@opentelemetry/api');
const { W3CTraceContextPropagator, W3CBaggagePropagator } = require('@opentelemetry/core');

const traceContext = new W3CTraceContextPropagator();
const baggagePropagator = new W3CBaggagePropagator();

// Carrier: a list of [name, value] fields; names ignore case, repeats are a list.
const fieldsGetter = {
  keys: (fields) => [...new Set(fields.map(([n]) => n.toLowerCase()))],
  get: (fields, key) => {
    const values = fields.filter(([n]) => n.toLowerCase() === key).map(([, v]) => v);
    return values.length === 0 ? undefined : values.length === 1 ? values[0] : values;
  },
};

function normalizeMetadata(metadata) {
  if (!metadata) return '';
  return metadata
    .toString()
    .split(';')
    .map((p) => p.trim())
    .map((p) => {
      const i = p.indexOf('=');
      return i < 0 ? p : `${p.slice(0, i).trim()}=${p.slice(i + 1).trim()}`;
    })
    .join(';');
}

function otelExtract(fields) {
  let ctx = traceContext.extract(api.ROOT_CONTEXT, fields, fieldsGetter);
  ctx = baggagePropagator.extract(ctx, fields, fieldsGetter);
  const sc = api.trace.getSpanContext(ctx);
  const valid = sc !== undefined && api.isSpanContextValid(sc);
  const bag = api.propagation.getBaggage(ctx);
  return {
    trace: valid ? { traceId: sc.traceId, spanId: sc.spanId, flags: sc.traceFlags } : null,
    tracestate: valid && sc.traceState ? sc.traceState.serialize() : '',
    baggage: bag ? bag.getAllEntries().map(([k, e]) => [k, e.value, normalizeMetadata(e.metadata)]) : [],
  };
}

const TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const members = (n, from = 1) =>
  Array.from({ length: n }, (_, i) => `bar${String(i + from).padStart(2, '0')}=${i + from}`).join(',');

// The table. `spec` holds what ctxpool must extract where OpenTelemetry departs.
const cases = [
  // traceparent ("Traceparent Header", "Versioning of traceparent")
  { name: 'valid traceparent, sampled', headers: [['traceparent', TP]] },
  { name: 'not sampled', headers: [['traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00']] },
  { name: 'random-trace-id flag (Level 2)', headers: [['traceparent', '00-12345678901234567890123456789012-1234567890123456-02']] },
  { name: 'sampled and random', headers: [['traceparent', '00-12345678901234567890123456789012-1234567890123456-03']] },
  { name: 'header name in capitals', headers: [['TraceParent', TP]] },
  { name: 'leading space', headers: [['traceparent', ` ${TP}`]] },
  { name: 'trailing tab', headers: [['traceparent', `${TP}\t`]] },
  { name: 'future version cc', headers: [['traceparent', 'cc-12345678901234567890123456789012-1234567890123456-01']] },
  { name: 'future version with more fields', headers: [['traceparent', 'cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like']] },
  { name: 'future version, flags not followed by a dash', headers: [['traceparent', 'cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like']] },
  { name: 'version ff', headers: [['traceparent', 'ff-12345678901234567890123456789012-1234567890123456-01']] },
  { name: 'version 00 with trailing data', headers: [['traceparent', `${TP}-extra`]] },
  { name: 'version 00 with a trailing dot', headers: [['traceparent', `${TP}.`]] },
  { name: 'uppercase hex', headers: [['traceparent', TP.toUpperCase()]] },
  { name: 'all-zero trace id', headers: [['traceparent', '00-00000000000000000000000000000000-1234567890123456-01']] },
  { name: 'all-zero parent id', headers: [['traceparent', '00-12345678901234567890123456789012-0000000000000000-01']] },
  { name: 'version too long', headers: [['traceparent', '000-12345678901234567890123456789012-1234567890123456-01']] },
  { name: 'trace id too short', headers: [['traceparent', '00-1234567890123456789012345678901-1234567890123456-01']] },
  { name: 'flags too long', headers: [['traceparent', '00-12345678901234567890123456789012-1234567890123456-001']] },
  { name: 'illegal character in parent id', headers: [['traceparent', '00-12345678901234567890123456789012-123456789012345.-01']] },
  { name: 'empty traceparent', headers: [['traceparent', '']] },
  { name: 'no headers at all', headers: [] },
  {
    name: 'unknown flags',
    headers: [['traceparent', '00-12345678901234567890123456789012-1234567890123456-ff']],
    departs: { extract: { trace: 'OTel keeps unknown flags (255); "Other Flags": vendors MUST set them to zero' } },
    spec: { extracted: { trace: { traceId: '12345678901234567890123456789012', spanId: '1234567890123456', flags: 3 } } },
  },
  {
    name: 'two traceparent fields',
    headers: [['traceparent', '00-12345678901234567890123456789011-1234567890123456-01'], ['traceparent', TP]],
    departs: { extract: { trace: 'OTel uses the first field; the W3C suite (test_traceparent_duplicated) requires a restart' } },
    spec: { extracted: { trace: null } },
  },

  // tracestate ("Tracestate Header")
  { name: 'tracestate with traceparent', headers: [['traceparent', TP], ['tracestate', 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE']] },
  { name: 'tracestate without traceparent is discarded', headers: [['tracestate', 'foo=1']] },
  { name: 'tracestate with an invalid traceparent is discarded', headers: [['traceparent', 'ff' + TP.slice(2)], ['tracestate', 'foo=1']] },
  { name: 'several tracestate fields', headers: [['traceparent', TP], ['tracestate', 'foo=1,bar=2'], ['TraceState', 'rojo=1,congo=2'], ['tracestate', 'baz=3']] },
  { name: 'tracestate OWS', headers: [['traceparent', TP], ['tracestate', 'foo=1 \t , \t bar=2, \t baz=3']] },
  { name: 'tracestate empty members', headers: [['traceparent', TP], ['tracestate', ''], ['tracestate', 'foo=1,,']] },
  { name: 'tracestate value with leading spaces', headers: [['traceparent', TP], ['tracestate', 'foo=  1']] },
  { name: 'tracestate 32 members', headers: [['traceparent', TP], ['tracestate', members(20)], ['tracestate', members(12, 21)]] },
  { name: 'tracestate multi-tenant key', headers: [['traceparent', TP], ['tracestate', 'tenant@system=1,abc=2']] },
  {
    name: 'tracestate 33 members',
    headers: [['traceparent', TP], ['tracestate', members(33)]],
    departs: { extract: { tracestate: 'OTel keeps 32; over 32 members the header is invalid (W3C suite: test_tracestate_member_count_limit)' } },
    spec: { extracted: { tracestate: '' } },
  },
  {
    name: 'tracestate with one invalid key',
    headers: [['traceparent', TP], ['tracestate', 'foo=1,BAR=2']],
    departs: { extract: { tracestate: 'OTel drops the member alone; the W3C suite (strict) discards the header' } },
    spec: { extracted: { tracestate: '' } },
  },
  {
    name: 'tracestate with an empty value',
    headers: [['traceparent', TP], ['tracestate', 'foo=,bar=3']],
    departs: { extract: { tracestate: 'OTel drops the member alone; the W3C suite (test_tracestate_value_illegal_characters) discards the header' } },
    spec: { extracted: { tracestate: '' } },
  },
  {
    name: 'tracestate duplicated key',
    headers: [['traceparent', TP], ['tracestate', 'foo=1,bar=2,foo=3']],
    departs: { extract: { tracestate: 'OTel keeps the right-most value; the left-most is the most recent position ("Combined Header Value")' } },
    spec: { extracted: { tracestate: 'foo=1,bar=2' } },
  },
  {
    name: 'tracestate key starting with a digit, key ending with @',
    headers: [['traceparent', TP], ['tracestate', '0abc=1,foo@=2,bar=3']],
    departs: {
      extract: { tracestate: 'OTel follows the Level 1 key grammar; Level 2 allows a leading digit and any @ after the first character' },
      readback: { tracestate: 'same, on reading back' },
    },
    spec: { extracted: { tracestate: '0abc=1,foo@=2,bar=3' } },
  },
  {
    name: 'tracestate over 512 characters (13 members of 40)',
    headers: [['traceparent', TP], ['tracestate', Array.from({ length: 13 }, (_, i) => `k${String(i).padStart(2, '0')}=${'v'.repeat(36)}`).join(',')]],
  },
  {
    name: 'tracestate modified by the service: the key moves to the front',
    headers: [['traceparent', TP], ['tracestate', 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE']],
    setTracestate: [['congo', 'ucfJifl5GOE']],
  },

  // baggage (W3C Baggage "HTTP Header Format")
  { name: 'baggage example', headers: [['baggage', 'userId=alice,serverNode=DF%2028,isProduction=false']] },
  { name: 'baggage UTF-8', headers: [['baggage', 'userId=Am%C3%A9lie']] },
  { name: 'baggage OWS and several fields', headers: [['baggage', 'userId =   alice'], ['Baggage', 'serverNode = DF%2028, isProduction = false']] },
  { name: 'baggage properties', headers: [['baggage', 'key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue']] },
  { name: 'baggage value with =', headers: [['baggage', 'k=a=b==']] },
  { name: 'baggage invalid members dropped alone', headers: [['baggage', 'good=1,no-equals,=novalue,pct=100%,last=9']] },
  { name: 'baggage with trace context', headers: [['traceparent', TP], ['baggage', 'k=v']] },
  {
    name: 'baggage value with a space',
    headers: [['baggage', 'a=1,k=a b,z=2']],
    departs: { extract: { baggage: 'OTel accepts any character; a space is not a baggage-octet, so the member is invalid' } },
    spec: { extracted: { baggage: [['a', '1', ''], ['z', '2', '']] } },
  },
  {
    name: 'baggage value with a quote',
    headers: [['baggage', 'k="x"']],
    departs: { extract: { baggage: 'OTel accepts it; DQUOTE is not a baggage-octet' } },
    spec: { extracted: { baggage: [] } },
  },
  {
    name: 'baggage empty value',
    headers: [['baggage', 'k=,j=1']],
    departs: {
      extract: { baggage: 'OTel drops it; value = *baggage-octet may be empty' },
      readback: { baggage: 'OTel drops the empty value it reads back' },
    },
    spec: { extracted: { baggage: [['k', '', ''], ['j', '1', '']] } },
  },
  {
    name: 'baggage key with a percent sign',
    headers: [['baggage', 'a%41=1']],
    departs: {
      extract: { baggage: 'OTel percent-decodes keys; a key is a token and is not encoded' },
      readback: { baggage: 'same, on reading back' },
    },
    spec: { extracted: { baggage: [['a%41', '1', '']] } },
  },
  {
    name: 'baggage invalid UTF-8',
    headers: [['baggage', 'k=%FF,j=1']],
    departs: { extract: { baggage: 'OTel drops the member; the spec replaces the octets with U+FFFD' } },
    spec: { extracted: { baggage: [['k', '\uFFFD', ''], ['j', '1', '']] } },
  },
  {
    name: 'baggage duplicated keys',
    headers: [['baggage', 'k=1,o=x,k=2']],
    departs: {
      extract: { baggage: 'OTel keeps one value per key; keys are not unique and their order is kept' },
      readback: { baggage: 'same, on reading back' },
    },
    spec: { extracted: { baggage: [['k', '1', ''], ['o', 'x', ''], ['k', '2', '']] } },
  },
  {
    name: 'baggage set by the service: characters that need encoding',
    headers: [],
    setBaggage: [['user', 'Amélie Ünver'], ['path', '/a,b;c\\d"e%f=g'], ['emoji', '😀'], ['p', 'v', [['ttl', '60 s'], ['flag']]]],
  },
  {
    name: 'baggage 64 members near 8192 bytes',
    headers: [['baggage', Array.from({ length: 64 }, (_, i) => `key${String(i).padStart(2, '0')}=${'v'.repeat(120)}`).join(',')]],
  },
];

function main() {
  const driver = process.argv[2];
  assert.ok(driver, 'usage: node interop.js <otel_interop_driver>');
  const run = spawnSync(driver, [], { input: JSON.stringify(cases), encoding: 'utf8', timeout: 60000, maxBuffer: 64 << 20 });
  if (run.error) throw run.error;
  assert.equal(run.status, 0, `driver failed: ${run.stderr}`);
  const results = JSON.parse(run.stdout);
  assert.equal(results.length, cases.length);

  let failures = 0;
  let checks = 0;
  const departures = [];
  cases.forEach((c, i) => {
    const ours = results[i];
    const fail = (what, err) => {
      failures += 1;
      console.error(`FAIL ${c.name}: ${what}\n  ${String(err.message).split('\n').join('\n  ')}`);
    };
    const otel = otelExtract(c.headers);
    for (const field of ['trace', 'tracestate', 'baggage']) {
      checks += 1;
      const reason = c.departs?.extract?.[field];
      try {
        if (reason) {
          assert.deepEqual(ours.extracted[field], c.spec.extracted[field], 'ctxpool must follow the specification');
          assert.notDeepEqual(otel[field], ours.extracted[field], 'OpenTelemetry now agrees: move this case out of the departures');
          departures.push(`${c.name} [${field}]: ${reason}`);
        } else {
          assert.deepEqual(ours.extracted[field], otel[field]);
        }
      } catch (err) {
        fail(`extract ${field}`, err);
      }
    }
    // What ctxpool injects, OpenTelemetry reads back unchanged.
    const injectedFields = Object.entries(ours.injected.headers);
    const readback = otelExtract(injectedFields);
    for (const field of ['trace', 'tracestate', 'baggage']) {
      checks += 1;
      const reason = c.departs?.readback?.[field];
      try {
        if (reason) {
          assert.notDeepEqual(readback[field], ours.injected[field], 'OpenTelemetry now reads it back: move this case out of the departures');
          departures.push(`${c.name} [read back ${field}]: ${reason}`);
        } else {
          assert.deepEqual(readback[field], ours.injected[field]);
        }
      } catch (err) {
        fail(`read back ${field} from ${JSON.stringify(ours.injected.headers)}`, err);
      }
    }
    // "Update parent-id": same trace, new parent id, flags kept.
    checks += 1;
    try {
      const sent = ours.injected.trace;
      assert.match(ours.injected.headers.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[0-3]$/);
      if (ours.extracted.trace) {
        assert.equal(sent.traceId, ours.extracted.trace.traceId);
        assert.notEqual(sent.spanId, ours.extracted.trace.spanId);
        assert.equal(sent.flags, ours.extracted.trace.flags);
      }
    } catch (err) {
      fail('inject traceparent', err);
    }
  });

  console.log(`ctxpool vs OpenTelemetry JS: ${cases.length} cases, ${checks} checks, ${failures} failed`);
  console.log(`departures of OpenTelemetry from the W3C specifications (ctxpool follows the specification):`);
  for (const d of departures) console.log(`  - ${d}`);
  process.exit(failures === 0 ? 0 : 1);
}

main();
