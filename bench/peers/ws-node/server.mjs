// Broadcast server on `ws` 8, written the way its README suggests.
// WS  /ws?channel=C            subscribe to C; each text frame is one published body
// POST /publish?channel=C      body is sent verbatim to every subscriber of C
// GET  /health                 200
import http from 'node:http';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2] || process.env.PORT || 8080);
const channels = new Map(); // channel -> Set<WebSocket>

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (req.method === 'GET' && url.pathname === '/health') return res.end('ok');
  if (req.method !== 'POST' || url.pathname !== '/publish') { res.statusCode = 404; return res.end(); }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks); // one buffer, shared by every send
    const subs = channels.get(url.searchParams.get('channel')) || [];
    for (const ws of subs) ws.send(body, { binary: false });
    res.end(JSON.stringify({ delivered: subs.size || 0 }));
  });
});

const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  const channel = new URL(req.url, 'http://x').searchParams.get('channel') || '';
  if (!channels.has(channel)) channels.set(channel, new Set());
  channels.get(channel).add(ws);
  ws.on('error', () => {});
  ws.on('close', () => {
    const subs = channels.get(channel);
    subs.delete(ws);
    if (subs.size === 0) channels.delete(channel);
  });
});

server.listen(port, '127.0.0.1', () => console.log(`ws-node listening on 127.0.0.1:${port}`));
