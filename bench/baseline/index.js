// The benchmark's baseline: the least a worker can do, answering a fixed JSON body (set by the
// benchmark to the size of a real token answer) with the same headers.
export default {
  fetch(request, env) {
    return new Response(env.BODY, {
      headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
    });
  },
};
