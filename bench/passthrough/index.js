// The benchmark's gateway floor: the least a pass-through worker can do, forwarding the path and
// query to a fixed upstream (`UPSTREAM`) with fetch and handing back its answer.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.UPSTREAM + url.pathname + url.search, {
      method: request.method,
      headers: { accept: request.headers.get("accept") || "*/*" },
    });
  },
};
