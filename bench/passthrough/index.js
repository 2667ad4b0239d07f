// The benchmark's gateway floor: the least a pass-through worker can do, forwarding the path and
// query to a fixed upstream (`UPSTREAM`) with fetch and handing back its answer. With `LOG_LINE`
// set it also writes one JSON log line per call, as the gateway must: the bench reports both, so
// that the runtime's own cost of a log line is not charged to the gateway's code.
export default {
  async fetch(request, env) {
    const started = Date.now();
    const url = new URL(request.url);
    const answer = await fetch(env.UPSTREAM + url.pathname + url.search, {
      method: request.method,
      headers: { accept: request.headers.get("accept") || "*/*" },
    });
    if (env.LOG_LINE) {
      console.log(JSON.stringify({
        event: "gateway_call", account: "bench", method: request.method, path: url.pathname,
        mode: "keyed", status: answer.status, errcode: null, retried: false,
        duration_ms: Date.now() - started,
      }));
    }
    return answer;
  },
};
