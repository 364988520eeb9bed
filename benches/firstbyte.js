// Row B4 of docs/performance.md, the streaming half: an upstream that
// sends a document's head and then stalls, and a client that times the
// first body bytes, directly and through the proxy. Node's core only.
//
//   node benches/firstbyte.js serve PORT [stall ms, default 1500]
//   node benches/firstbyte.js measure URL [times, default 20]
//     prints the median milliseconds from the request until the body's
//     first bytes (the text "first") arrived
'use strict';
const http = require('http');

const [mode, arg, extra] = process.argv.slice(2);
if (mode === 'serve') {
  const stall = Number(extra || 1500);
  http
    .createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.write('<!DOCTYPE html><html><head><title>stall</title></head><body><p>first</p>\n');
      const timer = setTimeout(() => res.end('<p>rest</p></body></html>\n'), stall);
      res.on('close', () => clearTimeout(timer));
    })
    .listen(Number(arg), '127.0.0.1');
} else if (mode === 'measure') {
  const times = Number(extra || 20);
  const agent = new http.Agent({ keepAlive: false });
  const one = () =>
    new Promise((resolve, reject) => {
      const start = process.hrtime.bigint();
      let seen = '';
      const req = http.get(arg, { agent }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          seen += chunk;
          if (seen.includes('first')) {
            resolve(Number(process.hrtime.bigint() - start) / 1e6);
            req.destroy();
          }
        });
        res.on('end', () => reject(new Error(`no first bytes in ${JSON.stringify(seen)}`)));
      });
      req.on('error', (e) => (e.code === 'ECONNRESET' ? null : reject(e)));
    });
  (async () => {
    const ms = [];
    for (let i = 0; i < times; i++) ms.push(await one());
    ms.sort((a, b) => a - b);
    console.log(ms[Math.floor(ms.length / 2)].toFixed(2));
  })().catch((e) => {
    console.error(e.message);
    process.exit(1);
  });
} else {
  console.error('usage: firstbyte.js serve PORT [stall ms] | measure URL [times]');
  process.exit(2);
}
