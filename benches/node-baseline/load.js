// Usage: node load.js -n 2000 -c 8 [-p 8089]   keep-alive, C concurrent clients, N total requests
const http = require('node:http');
const a = process.argv.slice(2), arg = (k, d) => { const i = a.indexOf(k); return i < 0 ? d : +a[i + 1]; };
const N = arg('-n', 2000), C = arg('-c', 8), PORT = arg('-p', 8089);
const agent = new http.Agent({ keepAlive: true, maxSockets: C });
const get = (ag = agent) => new Promise(r => {
  const q = http.get({ host: '127.0.0.1', port: PORT, path: '/', agent: ag }, s => {
    let b = ''; s.setEncoding('utf8'); s.on('data', d => b += d); s.on('end', () => r({ status: s.statusCode, body: b }));
  });
  q.on('error', e => r({ err: e.code || e.message }));
});
(async () => {
  let sent = 0, ok = 0, non200 = 0, connErr = 0; const vals = [], errs = {};
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: C }, async () => {
    while (sent < N) { sent++; const r = await get();
      if (r.err) { connErr++; errs[r.err] = (errs[r.err] || 0) + 1; }
      else if (r.status !== 200) non200++; else { ok++; vals.push(+r.body); } }
  }));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  agent.destroy();
  const uniq = new Set(vals).size, fin = await get(false);   // one extra request reads final+1
  const final = fin.status === 200 ? +fin.body - 1 : NaN;
  console.log(JSON.stringify({ n: N, c: C, secs: +secs.toFixed(3), rps: +(N / secs).toFixed(1), ok, non200, connErr, errs,
    uniqueValues: uniq, duplicateAnswers: ok - uniq, maxAnswered: Math.max(...vals), finalCounter: final,
    lostUpdates: final - 0 >= 0 ? ok - final : 'n/a' }));
})();
