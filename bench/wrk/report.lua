-- Appended to every wrk script the harness runs: prints one line of JSON the harness parses.
-- Latencies are in microseconds; requests/s = requests / (duration_us / 1e6).
function done(summary, latency, requests)
  local e = summary.errors
  local lat = "null"
  if summary.requests > 0 then
    lat = string.format(
      '{"min":%.0f,"max":%.0f,"mean":%.1f,"stdev":%.1f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f}',
      latency.min, latency.max, latency.mean, latency.stdev,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9))
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f},' ..
    '"latency_us":%s}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, lat))
end
