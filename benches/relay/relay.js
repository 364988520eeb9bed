// The anchor of the hub benchmark (B5): what a co-browsing hub is at its
// simplest, the design of the TogetherJS hub. Every WebSocket on
// /hub/<room> is in that room; each text message is relayed as it came to
// every other socket of the room. No sessions, roles, masking, limits or
// replay: the floor a real hub is compared with.
//
//   node relay.js [port, default 18090]
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 18090);
const rooms = new Map();
const server = http.createServer((req, res) => {
  res.writeHead(req.url === '/healthz' ? 200 : 404);
  res.end(req.url === '/healthz' ? 'ok\n' : '');
});
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  const match = /^\/hub\/([^/?]+)/.exec(req.url);
  if (!match) {
    ws.close(1008, 'no room');
    return;
  }
  const name = match[1];
  let room = rooms.get(name);
  if (!room) {
    room = new Set();
    rooms.set(name, room);
  }
  room.add(ws);
  ws.on('message', (data, isBinary) => {
    for (const other of room) {
      if (other !== ws && other.readyState === 1) {
        other.send(data, { binary: isBinary });
      }
    }
  });
  ws.on('close', () => {
    room.delete(ws);
    if (room.size === 0) {
      rooms.delete(name);
    }
  });
  ws.on('error', () => {});
});
server.listen(port, '127.0.0.1', () => console.log(`relay listening on 127.0.0.1:${port}`));
