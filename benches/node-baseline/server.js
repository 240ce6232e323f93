// Lesson baseline: file-backed counter via node-localstorage, N workers via cluster.
const cluster = require('node:cluster');
const http = require('node:http');
const PORT = +(process.env.PORT || 8089), WORKERS = +(process.env.WORKERS || 4);
if (cluster.isPrimary) {
  // Seed the key before forking: node-localstorage indexes keys only at construction, so a worker
  // started before the file exists returns null for it forever (until it writes it itself).
  if (process.env.SEED !== '0') { const { LocalStorage } = require('node-localstorage');
    const ls = new LocalStorage('./data'); if (ls.getItem('counter') === null) ls.setItem('counter', '0'); }
  console.log(`primary ${process.pid} forking ${WORKERS} workers on 127.0.0.1:${PORT}`);
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  process.on('SIGTERM', () => { for (const id in cluster.workers) cluster.workers[id].kill(); process.exit(0); });
} else {
  const { LocalStorage } = require('node-localstorage');
  const ls = new LocalStorage('./data');
  http.createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/') { res.statusCode = 404; return res.end(); }
    const n = Number(ls.getItem('counter') || 0) + 1;   // read
    ls.setItem('counter', String(n));                   // write back (not atomic across processes)
    res.setHeader('content-type', 'text/plain');
    res.end(String(n));
  }).listen(PORT, '127.0.0.1');
}
