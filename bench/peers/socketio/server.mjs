// Broadcast server on socket.io 4.8: one room per channel.
// WS   /socket.io/?EIO=4&transport=websocket   emit("subscribe", C[, ack]) joins room C
// POST /publish?channel=C     io.to(C).emit("message", body) (encoded once per broadcast)
// GET  /health                200
import http from 'node:http';
import { Server } from 'socket.io';

const port = Number(process.argv[2] || process.env.PORT || 8080);

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (req.method === 'GET' && url.pathname === '/health') return res.end('ok');
  if (req.method !== 'POST' || url.pathname !== '/publish') { res.statusCode = 404; return res.end(); }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    io.to(url.searchParams.get('channel') || '').emit('message', Buffer.concat(chunks).toString('utf8'));
    res.end('ok');
  });
});

const io = new Server(server, { serveClient: false });
io.on('connection', (socket) => {
  socket.on('subscribe', (channel, ack) => {
    socket.join(String(channel));
    if (typeof ack === 'function') ack('ok'); // optional: lets a client know it is subscribed
  });
});

server.listen(port, '127.0.0.1', () => console.log(`socketio listening on 127.0.0.1:${port}`));
