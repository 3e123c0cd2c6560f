// Reads a pprof profile (gzipped or not) with pprof-format, Datadog's pure-JavaScript decoder,
// and prints what the test checks as JSON: sample types, periods, sample totals, the functions
// named in the samples' stacks and the thread labels.
// Usage: node pprof_read.js <path to node_modules/pprof-format> <profile file>
const zlib = require("zlib");
const fs = require("fs");
const { Profile } = require(process.argv[2]);

let buf = fs.readFileSync(process.argv[3]);
if (buf[0] === 0x1f && buf[1] === 0x8b) buf = zlib.gunzipSync(buf);
const p = Profile.decode(buf);
const str = (i) => p.stringTable.strings[Number(i)];
const fnName = new Map(p.function.map((f) => [Number(f.id), str(f.name)]));
const locFns = new Map(
  p.location.map((l) => [Number(l.id), l.line.map((ln) => fnName.get(Number(ln.functionId)))])
);
const functions = new Set();
const threads = new Set();
let samples = 0;
let cpu = 0;
for (const s of p.sample) {
  samples += Number(s.value[0]);
  cpu += Number(s.value[1]);
  for (const id of s.locationId) for (const f of locFns.get(Number(id)) || ["<unknown location>"]) functions.add(f);
  for (const l of s.label) if (str(l.key) === "thread") threads.add(str(l.str));
}
console.log(
  JSON.stringify({
    sample_types: p.sampleType.map((t) => [str(t.type), str(t.unit)]),
    period_type: p.periodType ? [str(p.periodType.type), str(p.periodType.unit)] : null,
    period: Number(p.period),
    duration_nanos: Number(p.durationNanos),
    samples,
    cpu_nanos: cpu,
    stacks: p.sample.length,
    functions: [...functions],
    threads: [...threads],
  })
);
